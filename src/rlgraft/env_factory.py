"""What the EnvRunners call to build an env: `MakeEnv` for the forms RLlib cannot take as they are
(factories, copies of a single-agent env, PettingZoo games), and how `module:attribute` is found.

RLlib accepts only an env id or a class, and pickles the class by name into checkpoints, so this
module's names are part of every such checkpoint: keep them stable.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from rlgraft.errors import RlgraftError, did_you_mean


class MakeEnv:
    """The env class RLlib gets for the forms it cannot take as they are (RLlib accepts only a class
    or an id): `MakeEnv(env_config)` returns the env that `make` builds, not a MakeEnv."""

    def __new__(cls, config: Mapping[str, Any]) -> Any:  # type: ignore[misc]
        return make(config)


def make(config: Mapping[str, Any]) -> Any:
    """The env for `{env, kwargs, num_agents}`; RLlib builds it through `MakeEnv`.

    `env` is a gymnasium id or `module:attribute`; `num_agents` copies a single-agent env (agent ids
    0..n-1, as RLlib's `make_multi_agent`); a PettingZoo game is wrapped with RLlib's own wrappers.
    """
    descriptor, kwargs, copies = str(config["env"]), dict(config.get("kwargs") or {}), config.get("num_agents")
    if copies:
        from ray.rllib.env.multi_agent_env import make_multi_agent

        cls = make_multi_agent(lambda _: _instantiate(descriptor, kwargs))
        return cls({"num_agents": int(copies)})  # type: ignore[call-arg]
    return as_rllib_env(_instantiate(descriptor, kwargs))


def _instantiate(descriptor: str, kwargs: dict[str, Any]) -> Any:
    target = target_of(descriptor)
    if target is None:
        return gym.make(descriptor, **kwargs)
    return target(kwargs) if takes_config(target) else target(**kwargs)


def as_rllib_env(env: Any) -> Any:
    """A PettingZoo game in RLlib's wrapper; anything else as it is."""
    kind = pettingzoo_kind(env)
    if kind == "parallel":
        from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

        return ParallelPettingZooEnv(env)
    if kind == "aec":
        from ray.rllib.env.wrappers.pettingzoo_env import PettingZooEnv

        return PettingZooEnv(env)
    return env


def pettingzoo_kind(env: Any) -> str | None:
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(env).__mro__}
    if "pettingzoo.utils.env.ParallelEnv" in names:
        return "parallel"
    if "pettingzoo.utils.env.AECEnv" in names:
        return "aec"
    return None


def takes_config(target: Any) -> bool:
    """RLlib's convention, `Env(config)`, for env classes and one-argument factories; factories with
    keyword parameters (PettingZoo's `parallel_env(**kwargs)`) get `env.kwargs` as keywords."""
    if isinstance(target, type):
        return True
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return True
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return False
    required = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) == 1 or (len(params) == 1 and params[0].kind is not inspect.Parameter.KEYWORD_ONLY)


def target_of(descriptor: str) -> Any:
    """The object `module:attribute` names, or None for a gymnasium id (also gymnasium's `module:Id`)."""
    if ":" not in descriptor:
        return None
    module_name, _, attr = descriptor.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise RlgraftError(f"env.id={descriptor!r}: module `{module_name}` does not import "
                           f"({type(exc).__name__}: {exc})",
                           fix="install the package that has it, or run from the folder that holds the module "
                               "(rlgraft imports from where you start it)") from exc
    if hasattr(module, attr):
        return getattr(module, attr)
    if attr in gym.registry:  # gymnasium's `module:Id`: importing the module registered the id
        return None
    public = {n for n in dir(module) if not n.startswith("_")} | set(gym.registry)
    raise RlgraftError(f"env.id={descriptor!r}: `{module_name}` has no attribute `{attr}` and no gymnasium id "
                       f"`{attr}` was registered by importing it{did_you_mean(attr, public)}",
                       fix=f"name a class or factory of {module_name}, e.g. env.id={module_name}:MyEnv")
