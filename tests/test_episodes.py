"""rlgraft.episodes.LastEpisodes: the 20-episode stop statistic across iterations, without Ray (RLlib
calls the hook with episode chunks and the EnvRunner's MetricsLogger; both are stood in for here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rlgraft.episodes import LastEpisodes


@dataclass
class Chunk:
    ret: float
    agent_episodes: dict = field(default_factory=dict)

    def get_return(self) -> float:
        return self.ret


class Logger:
    def __init__(self):
        self.logged: list[tuple] = []

    def log_value(self, key, value, reduce, window):
        assert reduce == "mean" and window == 1  # the latest value is what each iteration reports
        self.logged.append((key, value))


def test_mean_of_the_last_20_episodes_with_their_earlier_chunks():
    hook, log, runner = LastEpisodes(window=20), Logger(), object()
    for i in range(19):
        hook(episode=Chunk(-float(i)), metrics_logger=log, env_runner=runner)
    assert math.isnan(log.logged[-1][1])  # fewer than 20 episodes: no statistic yet
    # The 20th episode came in two chunks (an iteration boundary in the middle): -100 + -50.
    hook(episode=Chunk(-100.0), metrics_logger=log, env_runner=runner, prev_episode_chunks=[Chunk(-50.0)])
    assert log.logged[-1] == ("episode_return_mean_last_20", (-sum(range(19)) - 150.0) / 20)
    hook(episode=Chunk(0.0), metrics_logger=log, env_runner=runner)  # the first episode (0) leaves the window
    assert log.logged[-1][1] == (-sum(range(1, 19)) - 150.0) / 20


def test_per_agent_windows_in_a_multi_agent_episode():
    hook, log, runner = LastEpisodes(window=2), Logger(), object()
    for r0, r1 in [(-10.0, -30.0), (-20.0, -40.0)]:
        episode = Chunk(r0 + r1, {0: Chunk(r0), 1: Chunk(r1)})
        hook(episode=episode, metrics_logger=log, env_runner=runner)
    last = dict(log.logged[-3:])
    assert last["episode_return_mean_last_2"] == -50.0
    assert last[("agent_episode_return_mean_last_2", "0")] == -15.0
    assert last[("agent_episode_return_mean_last_2", "1")] == -35.0
