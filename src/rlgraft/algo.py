"""Build the RLlib AlgorithmConfig from rlgraft's config, and fit its resources to the cluster.

`algo.<section>` maps onto the AlgorithmConfig builder method of the same name, so any RLlib option
can be set from YAML. Keys are checked against the builder signatures before Ray starts.
"""

from __future__ import annotations

import dataclasses
import inspect
from functools import cache
from typing import Any

from rlgraft import envs
from rlgraft.errors import RlgraftError, did_you_mean
from rlgraft.schema import AlgoConfig, Config

SECTIONS = [f.name for f in dataclasses.fields(AlgoConfig) if f.name != "name"]
# Set by rlgraft itself from `env`, `seed` and `resources`; a user value would be silently replaced.
MANAGED = {"multi_agent": {"policies", "policy_mapping_fn"}, "debugging": {"seed"}}


def algo_class(name: str) -> Any:
    from ray.tune.registry import get_trainable_cls

    try:
        cls = get_trainable_cls(name)
    except Exception as exc:  # Tune raises TuneError with a long text
        from ray.rllib.algorithms.registry import ALGORITHMS

        raise RlgraftError(f"algo.name={name!r} is not an RLlib algorithm{did_you_mean(name, set(ALGORITHMS))}",
                           fix="use e.g. algo.name=PPO") from exc
    return cls


@cache
def builder_params(cls: type, method: str) -> frozenset[str]:
    """Named keyword arguments a builder accepts, across the class hierarchy (subclasses pass **kwargs up)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        fn = klass.__dict__.get(method)
        if fn is None:
            continue
        names |= {p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
    return frozenset(names)


def check_section(config_cls: type, section: str, options: dict[str, Any]) -> None:
    allowed = builder_params(config_cls, section)
    for key in options:
        if key not in allowed:
            raise RlgraftError(
                f"`algo.{section}.{key}` is not an option of RLlib's "
                f"{config_cls.__name__}.{section}(){did_you_mean(key, allowed)}",
                found=f"accepted options: {', '.join(sorted(allowed))}",
                fix=f"correct or remove `algo.{section}.{key}`",
            )
    for key in MANAGED.get(section, set()) & set(options):
        raise RlgraftError(f"`algo.{section}.{key}` is set by rlgraft",
                           fix="use `env.*` for the agent mapping and `seed` for the seed")
    if section == "rl_module" and isinstance(options.get("model_config"), dict):
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        known = {f.name for f in dataclasses.fields(DefaultModelConfig)}
        for key in options["model_config"]:
            if key not in known:
                raise RlgraftError(
                    f"`algo.rl_module.model_config.{key}` is not a field of RLlib's "
                    f"DefaultModelConfig{did_you_mean(key, known)}",
                    fix=f"correct or remove `algo.rl_module.model_config.{key}`")


def options(cfg: Config, section: str) -> dict[str, Any]:
    """A section's options with nulls dropped (null means: keep RLlib's default)."""
    return {k: v for k, v in getattr(cfg.algo, section).items() if v is not None}


def build(cfg: Config, *, num_env_runners: int | None = None, env_name: str | None = None) -> Any:
    """The RLlib AlgorithmConfig for `cfg`. Needs no Ray runtime; registers nothing."""
    cls = algo_class(cfg.algo.name)
    config = cls.get_default_config()
    for section in SECTIONS:
        opts = options(cfg, section)
        check_section(type(config), section, opts)
        if section == "env_runners" and num_env_runners is not None:
            opts["num_env_runners"] = num_env_runners
        if opts:
            getattr(config, section)(**opts)
    envs.check_env_id(cfg.env.id)
    config.environment(env=env_name or envs.registered_name(cfg.env), env_config={})
    if cfg.env.multi_agent:
        config.multi_agent(policies=set(envs.policies(cfg.env)),
                           policy_mapping_fn=envs.PolicyMapping(cfg.env.policy_mapping))
    if cfg.seed is not None:
        config.debugging(seed=cfg.seed)
    return config


def module_specs(config: Any, spaces: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """RLModuleSpec per module id, from spaces given per module id (no Ray, no env registry)."""
    return dict(config.get_multi_rl_module_spec(spaces=spaces).rl_module_specs)


def resource_request(config: Any) -> dict[str, Any]:
    """CPUs/GPUs one trial asks for, and its largest single bundle."""
    pgf = config.algo_class.default_resource_request(config)
    bundles = [dict(b) for b in pgf.bundles]
    return {"total": dict(pgf.required_resources), "bundles": bundles}
