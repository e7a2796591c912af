"""Environments: what `env.id` names, the object RLlib gets for it, its agents and their spaces.

`env.id` is a gymnasium id (`Pendulum-v1`), gymnasium's `module:Id`, or `module:attribute` naming a
`gymnasium.Env` or RLlib `MultiAgentEnv` class, or a factory returning one of those or a PettingZoo
`ParallelEnv`/`AECEnv`. RLlib gets the gymnasium id or the user's class as they are, so a checkpoint
opens in plain RLlib; factories, replicated envs and PettingZoo games go through `MakeEnv`, a class
that pickles by name (RLlib takes only an id or a class; `env_factory`).
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import gymnasium as gym

from rlgraft.env_factory import MakeEnv, as_rllib_env, pettingzoo_kind, takes_config, target_of
from rlgraft.errors import RlgraftError, did_you_mean
from rlgraft.schema import EnvConfig

SINGLE_AGENT_MODULE = "default_policy"
SHARED = "shared"


@dataclass(frozen=True)
class PolicyMapping:
    """Agent id -> module id: a format string (`p{agent_id}`), `shared`, or agent-id globs, of which
    the most specific match wins (an exact id over `agent_*` over `*`), so a mapping added on the
    command line (`+env.policy_mapping.agent_0=hero`) refines a preset's without reordering it.

    A picklable, printable stand-in for RLlib's `policy_mapping_fn` lambda.
    """

    template: str = "p{agent_id}"
    globs: tuple[tuple[str, str], ...] = ()

    def __call__(self, agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
        matches = [(pattern, module) for pattern, module in self.globs if fnmatch.fnmatchcase(str(agent_id), pattern)]
        if matches:
            return max(matches, key=lambda m: _specificity(m[0]))[1]
        if self.globs:
            raise KeyError(f"rlgraft: no env.policy_mapping glob matches agent {agent_id!r}")
        return SHARED if self.template == SHARED else self.template.format(agent_id=agent_id)


def _specificity(pattern: str) -> tuple[int, int]:
    """Fewer wildcards first, then more literal characters."""
    wild = sum(pattern.count(c) for c in "*?[")
    return (-wild, len(pattern) - wild)


def mapping_of(env: EnvConfig) -> PolicyMapping:
    value = env.policy_mapping
    if isinstance(value, Mapping):
        return PolicyMapping(globs=tuple((str(k), str(v)) for k, v in value.items()))
    if not isinstance(value, str) or (value != SHARED and "{agent_id}" not in value and not value.isidentifier()):
        raise RlgraftError(f"env.policy_mapping={value!r} is not a format string, `shared` or a mapping",
                           fix="write 'env.policy_mapping=\"p{agent_id}\"' (quoted), env.policy_mapping=shared, "
                               "or 'env.policy_mapping={\"agent_*\": agent, \"adversary_*\": adversary}'")
    return PolicyMapping(template=value)


@dataclass(frozen=True)
class ResolvedEnv:
    """A resolved `env` config: what RLlib gets, and the agents and spaces of one local instance."""

    rllib_env: Any  # a gymnasium id string, the user's env class, or `MakeEnv`
    env_config: dict[str, Any]
    multi_agent: bool
    agent_spaces: dict[Any, tuple[gym.Space, gym.Space]]  # {None: spaces} for a single-agent env
    mapping: PolicyMapping | None
    label: str

    @property
    def agents(self) -> list[Any]:
        return list(self.agent_spaces)

    def module_of(self, agent: Any) -> str:
        return self.mapping(agent) if self.mapping and agent is not None else SINGLE_AGENT_MODULE

    def modules(self) -> dict[str, tuple[gym.Space, gym.Space]]:
        """Module id -> (observation, action) space, in agent order; agents sharing a module must agree."""
        out: dict[str, tuple[gym.Space, gym.Space]] = {}
        owner: dict[str, Any] = {}
        for agent, pair in self.agent_spaces.items():
            module = self.module_of(agent)
            if module in out and out[module] != pair:
                raise RlgraftError(
                    f"agents {owner[module]!r} and {agent!r} both map to module {module!r} but their spaces differ",
                    found=f"{owner[module]!r}: {out[module]}; {agent!r}: {pair}",
                    fix="map them to different modules in env.policy_mapping")
            out.setdefault(module, pair)
            owner.setdefault(module, agent)
        return out


def resolve(env: EnvConfig) -> ResolvedEnv:
    """Check `env` and build one instance locally (no Ray) to learn its agents and spaces.

    `env.kwargs` may hold `_target_` nodes (gymnasium spaces for RLlib's ActionMaskEnv, say): they are
    built here, in the driver, and the env gets the objects."""
    return _resolve(env.id, _hashable(env.kwargs), env.num_agents, _hashable(env.policy_mapping))


def _hashable(value: Any) -> Any:
    """A nested config value (dicts, lists, `_target_` nodes) as nested tuples, for the cache key."""
    if isinstance(value, Mapping):
        return ("{}", tuple((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("[]", tuple(_hashable(v) for v in value))
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "{}":
        return {k: _thaw(v) for k, v in value[1]}
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "[]":
        return [_thaw(v) for v in value[1]]
    return value


@cache
def _resolve(env_id: str, kwargs_key: Any, num_agents: int | None, mapping_key: Any) -> ResolvedEnv:
    from rlgraft import objects

    raw = _thaw(kwargs_key)
    kwargs = {k: objects.build(v, f"env.kwargs.{k}", str(k)) for k, v in raw.items()}
    mapping_value = _thaw(mapping_key)
    target = target_of(env_id)
    if target is None:
        check_env_id(env_id)
    instance = _build(env_id, target, kwargs)
    try:
        rllib_instance = as_rllib_env(instance)
        multi = _is_multi_agent(rllib_instance)
        if num_agents and multi:
            raise RlgraftError(f"env.num_agents={num_agents} copies a single-agent env, but `{env_id}` is "
                               "already multi-agent", fix="drop env.num_agents (use env=... without copies)")
        native = target is None or (isinstance(target, type) and not pettingzoo_kind(instance))
        spaces: dict[Any, tuple[gym.Space, gym.Space]]
        if num_agents:
            single = _single_spaces(rllib_instance, env_id)
            spaces = dict.fromkeys(range(num_agents), single)
        elif multi:
            spaces = _agent_spaces(rllib_instance, env_id)
        else:
            spaces = {None: _single_spaces(rllib_instance, env_id)}
    finally:
        _close(instance)
    if native and not num_agents:
        rllib_env, env_config = (env_id if target is None else target), dict(kwargs)
    else:
        rllib_env, env_config = MakeEnv, {"env": env_id, "kwargs": dict(kwargs), "num_agents": num_agents}
    is_multi = multi or bool(num_agents)
    mapping = mapping_of(EnvConfig(policy_mapping=mapping_value)) if is_multi else None
    resolved = ResolvedEnv(rllib_env, env_config, is_multi, spaces, mapping,
                   f"{env_id}" + (f" x{num_agents}" if num_agents else ""))
    if mapping is not None:
        _check_mapping(mapping, list(spaces))
    return resolved


def _build(env_id: str, target: Any, kwargs: dict[str, Any]) -> Any:
    if target is None:
        try:
            return gym.make(env_id, **kwargs)
        except TypeError as exc:
            raise RlgraftError(f"env.id={env_id!r} does not take env.kwargs {kwargs}: {exc}",
                               fix="remove or correct the keyword in env.kwargs") from exc
    if not callable(target):
        raise RlgraftError(f"env.id={env_id!r} names a {type(target).__name__}, not an env class or factory",
                           fix="name a gymnasium.Env or MultiAgentEnv class, or a function returning an env")
    if isinstance(target, type) and not _is_env_class(target):
        raise RlgraftError(f"env.id={env_id!r} is the class {target.__qualname__}, which is not an environment",
                           found=f"its bases: {', '.join(c.__name__ for c in target.__mro__[1:4])}",
                           fix="name a gymnasium.Env or ray.rllib MultiAgentEnv subclass, or a factory returning one")
    try:
        env = target(kwargs) if takes_config(target) else target(**kwargs)
    except RlgraftError:
        raise
    except Exception as exc:
        how = "with the env_config dict" if takes_config(target) else "with keyword arguments"
        raise RlgraftError(f"env.id={env_id!r} raised while building the env {how} {kwargs}: "
                           f"{type(exc).__name__}: {exc}",
                           fix="check env.kwargs against what the env expects") from exc
    if not (isinstance(env, gym.Env) or _is_multi_agent(env) or pettingzoo_kind(env)):
        raise RlgraftError(f"env.id={env_id!r} returned a {type(env).__name__}, not an environment",
                           fix="return a gymnasium.Env, an RLlib MultiAgentEnv, or a PettingZoo ParallelEnv/AECEnv")
    return env


def _is_env_class(cls: type) -> bool:
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    return issubclass(cls, gym.Env | MultiAgentEnv)


def _is_multi_agent(env: Any) -> bool:
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    return isinstance(env, MultiAgentEnv)


def _single_spaces(env: Any, env_id: str) -> tuple[gym.Space, gym.Space]:
    if _is_multi_agent(env):
        raise RlgraftError(f"`{env_id}` is multi-agent; env.num_agents copies single-agent envs only",
                           fix="drop env.num_agents")
    return env.observation_space, env.action_space


def _agent_spaces(env: Any, env_id: str) -> dict[Any, tuple[gym.Space, gym.Space]]:
    agents = list(getattr(env, "possible_agents", None) or getattr(env, "agents", None) or [])
    if not agents:
        raise RlgraftError(f"multi-agent env `{env_id}` lists no agents (`possible_agents` or `agents`)",
                           fix="set self.agents / self.possible_agents in the env's constructor")
    return {a: (env.get_observation_space(a), env.get_action_space(a)) for a in agents}


def _check_mapping(mapping: PolicyMapping, agents: list[Any]) -> None:
    if not mapping.globs:
        return
    unmapped = [a for a in agents if not any(fnmatch.fnmatchcase(str(a), g) for g, _ in mapping.globs)]
    unused = [g for g, _ in mapping.globs if not any(fnmatch.fnmatchcase(str(a), g) for a in agents)]
    if unmapped or unused:
        raise RlgraftError(
            "env.policy_mapping " + "; ".join(
                ([f"maps no module to agents {', '.join(map(repr, unmapped))}"] if unmapped else [])
                + ([f"has globs that match no agent: {', '.join(map(repr, unused))}"] if unused else [])),
            found=f"the env's agents: {', '.join(map(repr, agents))}",
            fix="give every agent a glob, e.g. 'env.policy_mapping={\"agent_*\": agent}', and drop unused ones")


def _close(env: Any) -> None:
    with contextlib.suppress(Exception):  # closing a probe instance must not hide a real error
        env.close()


def check_env_id(env_id: str) -> None:
    """A gymnasium id, or gymnasium's `module:Id` (`target_of` has imported the module, which registers it)."""
    env_id = env_id.partition(":")[2] or env_id
    if env_id not in gym.registry:
        raise RlgraftError(
            f"environment `{env_id}` is not registered with gymnasium{did_you_mean(env_id, set(gym.registry))}",
            fix="set env.id to a registered id such as Pendulum-v1, gymnasium's `module:Id`, or "
            "`module:ClassOrFactory`",
        )


def instantiate(env: EnvConfig) -> Any:
    """One env as the EnvRunners build it (a `MultiAgentEnv` for multi-agent runs), for evaluation."""
    resolved = resolve(env)
    creator: Callable[..., Any] | str = resolved.rllib_env
    if isinstance(creator, str):
        return gym.make(creator, **resolved.env_config)
    return creator(dict(resolved.env_config))
