"""The mean return of the last N finished episodes, across iterations: a stop statistic that does not
depend on the batch size.

RLlib 2.60's `env_runners/episode_return_mean` is the mean over the episodes that ended in one
iteration (its window stats are cleared at every reduce, `utils/metrics/stats/mean.py`), so a
smaller batch makes it a mean of fewer episodes. `LastEpisodes` keeps the last `window` returns
itself and logs their mean after every episode as `env_runners/episode_return_mean_last_<window>`
(NaN until `window` episodes have ended), so a preset can check its stop every iteration on the same
20-episode statistic. Returns are computed as RLlib computes its own (this chunk plus the earlier
chunks of the episode). Exact with 0 remote EnvRunners; with several, each keeps its own window and
RLlib averages their means.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

# One window per (EnvRunner, window size, agent) in this process; RLlib calls the hook, pickled by reference.
_windows: dict[tuple[int, int, Any], deque[float]] = {}
PREFIX = "episode_return_mean_last_"


@dataclass(frozen=True)
class LastEpisodes:
    """`algo.callbacks.on_episode_end: {_target_: rlgraft.episodes.LastEpisodes, window: 20}`.

    Logs `episode_return_mean_last_<window>` (the episode's return, all agents summed, as RLlib's
    `episode_return_mean`) and, in a multi-agent run, `agent_episode_return_mean_last_<window>/<agent>`
    per agent (as RLlib's `agent_episode_returns_mean/<agent>`).
    """

    window: int = 20

    def __call__(self, *, episode: Any, metrics_logger: Any, env_runner: Any = None,
                 prev_episode_chunks: Any = (), **kwargs: Any) -> None:
        chunks = [episode, *(prev_episode_chunks or ())]
        self._log(metrics_logger, (id(env_runner), self.window, None), f"{PREFIX}{self.window}",
                  sum(float(c.get_return()) for c in chunks))
        for agent in getattr(episode, "agent_episodes", {}):
            total = sum(float(c.agent_episodes[agent].get_return()) for c in chunks if agent in c.agent_episodes)
            self._log(metrics_logger, (id(env_runner), self.window, agent),
                      (f"agent_{PREFIX}{self.window}", str(agent)), total)

    def _log(self, metrics_logger: Any, where: tuple[int, int, Any], key: Any, value: float) -> None:
        returns = _windows.setdefault(where, deque(maxlen=self.window))
        returns.append(value)
        mean = sum(returns) / self.window if len(returns) == self.window else math.nan
        metrics_logger.log_value(key, mean, reduce="mean", window=1)  # the latest value at each reduce
