"""Build the RLlib AlgorithmConfig from rlgraft's config, and fit its resources to the cluster.

`algo.<section>` maps onto the AlgorithmConfig builder method of the same name, so any RLlib option
can be set from YAML. Keys are checked against the builder signatures before Ray starts.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator
from functools import cache
from typing import Any

from rlgraft import algorithms, envs, objects, replay, rules, transfer
from rlgraft.errors import RlgraftError, did_you_mean
from rlgraft.schema import AlgoConfig, Config

SECTIONS = [f.name for f in dataclasses.fields(AlgoConfig) if f.name != "name"]
# Options rlgraft sets itself, or that RLlib 2.60 no longer takes: (section, option) -> where to go instead.
REFUSED = {
    ("environment", "env"): "set env.id (a gymnasium id or module:ClassOrFactory)",
    ("environment", "env_config"): "set env.kwargs",
    ("multi_agent", "policies"): "the modules follow from the env and env.policy_mapping",
    ("multi_agent", "policy_mapping_fn"): "set env.policy_mapping (a format string, shared, or {glob: module})",
    ("debugging", "seed"): "set seed=N",
    ("debugging", "logger_config"): "removed from RLlib 2.60; Tune writes the logs (CSV, JSON, TensorBoard): "
                                    "choose trackers with logger=mlflow, logger=wandb, logger=tensorboard",
    ("debugging", "logger_creator"): "removed from RLlib 2.60; Tune writes the logs (CSV, JSON, TensorBoard): "
                                     "choose trackers with logger=mlflow, logger=wandb, logger=tensorboard",
    ("experimental", "_validate_config"): "rlgraft runs RLlib's validate() before Ray starts; it stays on",
    ("training", "model"): "the old API stack's model dict, which RLlib's new stack ignores: set "
                           "algo.rl_module.model_config (e.g. algo.rl_module.model_config.fcnet_hiddens=[64,64])",
}
# Whole sections refused, with the reason.
REFUSED_SECTIONS = {"api_stack": "rlgraft runs RLlib's new API stack (RLModule, Learner, EnvRunner) only; "
                                 "its restore and verification work on that stack"}


def algo_class(name: str) -> Any:
    from ray.tune.registry import get_trainable_cls

    try:
        cls = get_trainable_cls(name)
    except Exception as exc:  # Tune raises TuneError with a long text
        from ray.rllib.algorithms.registry import ALGORITHMS

        raise RlgraftError(f"algo.name={name!r} is not an RLlib algorithm{did_you_mean(name, set(ALGORITHMS))}",
                           fix="use e.g. algo.name=PPO") from exc
    return cls


def _parameters(cls: type, method: str) -> Iterator[inspect.Parameter]:
    """A builder's named keyword parameters, across the class hierarchy (subclasses pass **kwargs up)."""
    for klass in cls.__mro__:
        fn = klass.__dict__.get(method)
        for p in inspect.signature(fn).parameters.values() if fn is not None else ():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self":
                yield p


@cache
def builder_params(cls: type, method: str) -> frozenset[str]:
    """Named keyword arguments a builder accepts."""
    return frozenset(p.name for p in _parameters(cls, method))


@cache
def tuple_params(cls: type, method: str) -> frozenset[str]:
    """Options a builder takes as a tuple and not as a list (`n_step: int | Tuple[int, int]`). YAML has no
    tuples, and RLlib tells a range from a number with `isinstance(n_step, tuple)`: a list [2, 5] would pass
    validate() and then be used as one n-step."""
    import typing

    def takes_tuple_only(p: inspect.Parameter) -> bool:
        origins = {typing.get_origin(a) for a in typing.get_args(p.annotation) or (p.annotation,)}
        return tuple in origins and list not in origins

    return frozenset(p.name for p in _parameters(cls, method) if takes_tuple_only(p))


def check_section(config_cls: type, section: str, options: dict[str, Any]) -> None:
    allowed = builder_params(config_cls, section)
    for key in options:
        # Refusals first: some (debugging.logger_config) are gone from RLlib and would read as typos.
        if (section, key) in REFUSED:
            raise RlgraftError(f"`algo.{section}.{key}` is not passed to RLlib by rlgraft",
                               fix=REFUSED[(section, key)])
        if key not in allowed:
            raise RlgraftError(
                f"`algo.{section}.{key}` is not an option of RLlib's "
                f"{config_cls.__name__}.{section}(){did_you_mean(key, allowed)}",
                found=f"accepted options: {', '.join(sorted(allowed))}",
                fix=f"correct or remove `algo.{section}.{key}`",
            )
    for key in options:
        if (section, key) in REFUSED:
            raise RlgraftError(f"`algo.{section}.{key}` is not passed to RLlib by rlgraft",
                               fix=REFUSED[(section, key)])
    if section in REFUSED_SECTIONS and options:
        raise RlgraftError(f"`algo.{section}` is not supported", fix=REFUSED_SECTIONS[section])
    custom_module = "rl_module_spec" in options
    if section == "rl_module":
        rules.check_model_config(options.get("model_config"), "algo.rl_module.model_config")
        spec = options.get("rl_module_spec")
        if isinstance(spec, dict):
            rules.check_model_config(spec.get("model_config"), "algo.rl_module.rl_module_spec.model_config")
    if section == "rl_module" and isinstance(options.get("model_config"), dict) and not custom_module:
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        known = {f.name for f in dataclasses.fields(DefaultModelConfig)}
        for key in options["model_config"]:
            if key not in known:
                raise RlgraftError(
                    f"`algo.rl_module.model_config.{key}` is not a field of RLlib's "
                    f"DefaultModelConfig{did_you_mean(key, known)}",
                    fix=f"correct or remove `algo.rl_module.model_config.{key}`")


def check_preset(cfg: Config, config_cls: type) -> None:
    """`algo=sac` on its own keeps the default experiment preset, made for PPO: name the preset as the
    source of the options SAC does not take, rather than the options alone (the user never wrote them)."""
    from rlgraft.configs import preset_algo_options

    preset = preset_algo_options(cfg.name)
    if not preset or preset[0] == cfg.algo.name.lower():
        return
    made_for, sections = preset
    foreign = sorted(f"algo.{section}.{key}" for section, keys in sections.items() if section in SECTIONS
                     for key in keys if key not in builder_params(config_cls, section)
                     and getattr(cfg.algo, section).get(key) is not None)
    if foreign:
        ours = [f"experiment={n}" for n in presets_for(cfg.algo.name)]
        raise RlgraftError(
            f"algo={cfg.algo.name.lower()} runs with the experiment preset `{cfg.name}` (the default unless "
            f"experiment= picks another), which is made for algo={made_for} and sets options RLlib's "
            f"{config_cls.__name__} does not take: {', '.join(foreign)}",
            fix=(f"pick a preset made for {cfg.algo.name} ({', '.join(ours)}), or " if ours else "")
            + f"start from RLlib's own {cfg.algo.name} defaults without a preset: add ~experiment "
              f"(e.g. rlgraft run algo={cfg.algo.name.lower()} ~experiment env.id=...)")


def presets_for(name: str) -> list[str]:
    """The shipped experiment presets made for algorithm `name`."""
    from rlgraft.configs import CONF_DIR, preset_algo_options

    return sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")
                  if (found := preset_algo_options(p.stem)) and found[0] == name.lower())


def options(cfg: Config, section: str) -> dict[str, Any]:
    """A section's options with nulls dropped (null means: keep RLlib's default)."""
    return {k: v for k, v in getattr(cfg.algo, section).items() if v is not None}


def built_options(cfg: Config, section: str, multi_agent: bool = False) -> dict[str, Any]:
    """A section's options with `_target_` nodes built (`objects.build`)."""
    return {k: objects.build(v, f"algo.{section}.{k}", k, multi_agent) for k, v in options(cfg, section).items()}


def build(cfg: Config, *, num_env_runners: int | None = None) -> Any:
    """The RLlib AlgorithmConfig for `cfg`. Needs no Ray runtime; registers nothing: the env is a
    gymnasium id or an importable object, so the checkpoint's config opens in plain RLlib."""
    cls = algo_class(cfg.algo.name)
    config = cls.get_default_config()
    config_cls: type = config.__class__
    env = envs.resolve(cfg.env)
    check_preset(cfg, config_cls)
    for section in SECTIONS:
        check_section(config_cls, section, options(cfg, section))
        opts = built_options(cfg, section, env.multi_agent)
        opts.update({k: tuple(v) for k, v in opts.items()
                     if isinstance(v, list) and k in tuple_params(config_cls, section)})
        if section == "env_runners" and num_env_runners is not None:
            opts["num_env_runners"] = num_env_runners
        if section == "offline_data" and (pipeline := algorithms.data_pipeline(cfg.algo.name,
                                                                             opts.get("map_batches_kwargs"))):
            opts["map_batches_kwargs"] = pipeline
        if opts:
            getattr(config, section)(**opts)
    config.environment(env=env.rllib_env, env_config=env.env_config)
    if algorithms.is_offline(cfg.algo.name) and not env.multi_agent:  # the env is for evaluation only
        observation_space, action_space = env.agent_spaces[None]
        config.environment(observation_space=observation_space, action_space=action_space)
    algorithms.check_offline(cfg.algo.name, config)
    if env.multi_agent:
        assert env.mapping is not None
        config.multi_agent(policies=set(env.modules()), policy_mapping_fn=env.mapping)
        replay.fit(config)
    trainable = transfer.schedule(cfg, list(env.modules())).trainable  # restore.freeze, selfplay.to
    if trainable is not None:
        config.multi_agent(policies_to_train=list(trainable))
    if cfg.seed is not None:
        config.debugging(seed=cfg.seed)
    rules.check_rllib(config, cfg)
    return config


def add_callbacks(config: Any, **hooks: Any) -> None:
    """Append rlgraft's hooks (`on_algorithm_init=...`) after the user's own: RLlib's `callbacks()`
    setter replaces what an earlier call set, and takes a list of callables per event."""
    for event, hook in hooks.items():
        existing = getattr(config, f"callbacks_{event}", None)
        previous = list(existing) if isinstance(existing, list | tuple) else [existing] if existing else []
        config.callbacks(**{event: [*previous, hook] if previous else hook})


def module_specs(config: Any, spaces: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """RLModuleSpec per module id, from spaces given per module id (no Ray, no env registry)."""
    return dict(config.get_multi_rl_module_spec(spaces=spaces).rl_module_specs)


def env_to_module(config: Any, env: envs.ResolvedEnv) -> tuple[list[Any], dict[str, tuple[Any, Any]]]:
    """The env-to-module connector pipeline an EnvRunner of this run builds (its pieces, as RLlib saves
    them in a checkpoint) and each module's spaces after it: RLlib builds every module for what the
    pipeline puts out, so frame stacking, flattening or previous actions and rewards change the module's
    observation space from the env's. Built in the driver, as `build_env_to_module_connector` does in
    each EnvRunner (no Ray, no env)."""
    import gymnasium as gym
    from ray.rllib.env import INPUT_ENV_SINGLE_SPACES

    if env.multi_agent:
        single = (gym.spaces.Dict({a: o for a, (o, _) in env.agent_spaces.items()}),
                  gym.spaces.Dict({a: s for a, (_, s) in env.agent_spaces.items()}))
    else:
        single = env.agent_spaces[None]
    try:
        pipeline = config.build_env_to_module_connector(spaces={INPUT_ENV_SINGLE_SPACES: single}, device="cpu")
        pieces = pipeline.get_ctor_args_and_kwargs()[1]["connectors"]
        if env.multi_agent:
            spaces = {m: (o, pipeline.action_space[m]) for m, o in pipeline.observation_space.spaces.items()}
        else:
            spaces = {envs.SINGLE_AGENT_MODULE: (pipeline.observation_space, single[1])}
    except Exception as exc:
        raise RlgraftError(f"algo.env_runners.env_to_module_connector: RLlib could not build the connector "
                           f"pipeline for this env ({type(exc).__name__}: {exc})",
                           fix="check the connector pieces and their arguments against the env's spaces") from exc
    return pieces, spaces


def resource_request(config: Any) -> dict[str, Any]:
    """CPUs/GPUs one trial asks for, and its largest single bundle."""
    pgf = config.algo_class.default_resource_request(config)
    bundles = [dict(b) for b in pgf.bundles]
    total = dict(pgf.required_resources)
    if data := algorithms.data_cpus(config):  # Ray Data's actors and read tasks, beside the trial's bundles
        total["CPU"] = total.get("CPU", 0.0) + data
    return {"total": total, "bundles": bundles, "data_cpus": data}
