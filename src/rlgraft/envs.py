"""Environments: registration with Ray's registry and the declared agent -> policy mapping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from rlgraft.errors import RlgraftError, did_you_mean
from rlgraft.schema import EnvConfig

SINGLE_AGENT_MODULE = "default_policy"


@dataclass(frozen=True)
class PolicyMapping:
    """Agent id -> policy id from a format string; a picklable, printable stand-in for a lambda."""

    template: str = "p{agent_id}"

    def __call__(self, agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
        return self.template.format(agent_id=agent_id)


@dataclass(frozen=True)
class EnvCreator:
    """Builds the (possibly multi-agent) env inside each EnvRunner; picklable for Ray."""

    env_id: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    num_agents: int = 0  # 0: single-agent

    def __call__(self, env_context: Any = None) -> Any:
        kwargs = dict(self.kwargs)
        if not self.num_agents:
            return gym.make(self.env_id, **kwargs)
        from ray.rllib.env.multi_agent_env import make_multi_agent

        cls = make_multi_agent(lambda _cfg: gym.make(self.env_id, **kwargs))
        return cls({"num_agents": self.num_agents})  # type: ignore[call-arg]


def creator(env: EnvConfig) -> EnvCreator:
    check_env_id(env.id)
    return EnvCreator(env.id, tuple(sorted(env.kwargs.items())),
                      env.num_agents if env.multi_agent else 0)


def registered_name(env: EnvConfig) -> str:
    return f"rlgraft/{env.id}/{env.num_agents}agents" if env.multi_agent else f"rlgraft/{env.id}"


def register(env: EnvConfig) -> str:
    """Register with Ray's env registry (per job: `ray.shutdown` forgets registrations)."""
    from ray.tune.registry import register_env

    name = registered_name(env)
    register_env(name, creator(env))
    return name


def policies(env: EnvConfig) -> list[str]:
    """Module ids of the run, in agent order, without repeats."""
    if not env.multi_agent:
        return [SINGLE_AGENT_MODULE]
    mapping = PolicyMapping(env.policy_mapping)
    return list(dict.fromkeys(mapping(i) for i in range(env.num_agents)))


def agent_ids(env: EnvConfig) -> list[Any]:
    return list(range(env.num_agents)) if env.multi_agent else [None]


def spaces(env: EnvConfig) -> dict[str, tuple[gym.Space, gym.Space]]:
    """Observation and action space per module id, from a local env instance (no Ray needed)."""
    single = EnvCreator(env.id, tuple(sorted(env.kwargs.items())))()
    try:
        pair = (single.observation_space, single.action_space)
    finally:
        single.close()
    return {pid: pair for pid in policies(env)}


def check_env_id(env_id: str) -> None:
    if env_id not in gym.registry:
        raise RlgraftError(
            f"environment `{env_id}` is not registered with gymnasium{did_you_mean(env_id, set(gym.registry))}",
            fix="set env.id to a registered id such as Pendulum-v1, or import the package that "
            "registers it",
        )
