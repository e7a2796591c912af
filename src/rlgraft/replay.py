"""RLlib's episode replay buffers (DQN, SAC) in a multi-agent run: the one module that touches them.

Two things fail there in RLlib 2.60, both after Ray has spent its start-up and the first iterations:
- a single-agent buffer (the default of DQNConfig and SACConfig) fails at its first sample
  (`TypeError: unhashable type: 'slice'` in `PrioritizedEpisodeReplayBuffer.sample`, DQN on
  MultiAgentCartPole); RLlib's multi-agent counterparts take the same options, and RLlib's own
  multi-agent DQN and SAC examples set them by hand;
- a multi-agent buffer logs its metrics under the env's agent ids as they are, so an env whose agent ids
  are not strings (RLlib's MultiAgentCartPole and MultiAgentPendulum: 0, 1, ...) fails at the first
  checkpoint (`TypeError: sequence item 2: expected str instance, int found` in `MetricsLogger.get_state`).
  The EnvRunners log the same per-agent metrics under `str(agent_id)`; `StringAgentIds` makes the buffer do so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MULTI_AGENT = {"EpisodeReplayBuffer": "MultiAgentEpisodeReplayBuffer",
               "PrioritizedEpisodeReplayBuffer": "MultiAgentPrioritizedEpisodeReplayBuffer"}


def uses_buffer(config: Any) -> bool:
    return isinstance(getattr(config, "replay_buffer_config", None), dict)


def fit(config: Any) -> str | None:
    """For a multi-agent run: the multi-agent counterpart of a single-agent episode buffer. Returns the type
    now used, or None if nothing changed (no buffer, or one that already fits)."""
    if not uses_buffer(config):
        return None
    kind = config.replay_buffer_config.get("type")
    fitted = MULTI_AGENT.get(kind if isinstance(kind, str) else getattr(kind, "__name__", ""))
    if fitted:
        config.replay_buffer_config = {**config.replay_buffer_config, "type": fitted}
    return fitted


def _string_keys(tree: Any) -> Any:
    return {str(k): _string_keys(v) for k, v in tree.items()} if isinstance(tree, dict) else tree


@dataclass(frozen=True)
class _StringKeyedMetrics:
    get_metrics: Any

    def __call__(self) -> Any:
        return _string_keys(self.get_metrics())


@dataclass(frozen=True)
class StringAgentIds:
    """`on_algorithm_init`: the algorithm's replay buffer reports its per-agent metrics under string keys."""

    def __call__(self, *, algorithm: Any, **kwargs: Any) -> None:
        buffer = getattr(algorithm, "local_replay_buffer", None)
        if buffer is not None and not isinstance(buffer.get_metrics, _StringKeyedMetrics):
            buffer.get_metrics = _StringKeyedMetrics(buffer.get_metrics)
