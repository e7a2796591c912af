"""What a config may say: the value ranges as one table, unknown keys, rules across fields, and RLlib's
own `validate()`, all checked before Ray starts, each refusal naming the key as typed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlgraft.errors import RlgraftError, did_you_mean
from rlgraft.schema import GROUPS, AlgoConfig, Config


@dataclass(frozen=True)
class Range:
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # low itself is refused (lr > 0)
    integer: bool = False
    words: tuple[str, ...] = ()  # strings RLlib also takes (`auto`)

    def describe(self) -> str:
        lo = "" if self.low == -math.inf else f"{'>' if self.low_open else '>='} {self.low:g}"
        hi = "" if self.high == math.inf else f"<= {self.high:g}"
        kind = "an integer" if self.integer else "a number"
        return " and ".join(p for p in (f"{kind} {lo}".strip(), hi) if p) + (
            f" (or {', '.join(self.words)})" if self.words else "")

    def holds(self, value: Any) -> bool:
        if isinstance(value, str):
            return value in self.words
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return False
        if self.integer and value != int(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
UNIT = Range(0, 1)
COUNT = Range(1, integer=True)
COUNT0 = Range(0, integer=True)

# Every bounded option, by the key a user types. null always means "RLlib's (or rlgraft's) default".
# RLlib 2.60's validate() checks none of the algo.* bounds below (measured), so rlgraft does.
RANGES: dict[str, Range] = {
    "algo.training.lr": NON_NEGATIVE,  # 0 is a run that samples without learning (used to prove grafts)
    "algo.training.gamma": UNIT,
    "algo.training.lambda_": UNIT,
    "algo.training.clip_param": NON_NEGATIVE,
    "algo.training.vf_clip_param": NON_NEGATIVE,
    "algo.training.vf_loss_coeff": NON_NEGATIVE,
    "algo.training.entropy_coeff": NON_NEGATIVE,
    "algo.training.kl_coeff": NON_NEGATIVE,
    "algo.training.kl_target": NON_NEGATIVE,
    "algo.training.grad_clip": POSITIVE,
    "algo.training.train_batch_size_per_learner": COUNT,
    "algo.training.train_batch_size": COUNT,
    "algo.training.minibatch_size": COUNT,
    "algo.training.num_epochs": COUNT,
    "algo.env_runners.num_env_runners": COUNT0,
    "algo.env_runners.num_envs_per_env_runner": COUNT,
    "algo.env_runners.rollout_fragment_length": Range(1, integer=True, words=("auto",)),
    "algo.env_runners.num_cpus_per_env_runner": NON_NEGATIVE,
    "algo.env_runners.num_gpus_per_env_runner": NON_NEGATIVE,
    "algo.learners.num_learners": COUNT0,
    "algo.learners.num_cpus_per_learner": Range(0, words=("auto",)),
    "algo.learners.num_gpus_per_learner": NON_NEGATIVE,
    "algo.evaluation.evaluation_interval": COUNT,
    "algo.evaluation.evaluation_duration": Range(1, integer=True, words=("auto",)),
    "algo.evaluation.evaluation_num_env_runners": COUNT0,
    "algo.reporting.metrics_num_episodes_for_smoothing": COUNT,
    "algo.reporting.min_time_s_per_iteration": NON_NEGATIVE,
    "env.num_agents": COUNT,
    "checkpointing.frequency": COUNT0,
    "checkpointing.num_to_keep": COUNT,
    "checkpointing.experiment_state_s": POSITIVE,
    "resources.max_env_runners": COUNT0,
    "resources.max_concurrent_trials": COUNT,
    "resources.torch_threads": COUNT,
    "ray.num_cpus": COUNT,
    "tune.num_samples": COUNT,
    "tune.max_failures": Range(-1, integer=True),
    "tune.grace_period": COUNT,
    "restore.unfreeze_after": COUNT0,
}
# Stop keys that count up from 0: a negative threshold would stop before the first iteration ends.
COUNTER_SUFFIXES = ("_lifetime", "training_iteration", "time_total_s", "timesteps_total")
# Schedules (lists of [timestep, value]) are RLlib's to check.
SCHEDULE_OPTIONS = {"algo.training.lr", "algo.training.entropy_coeff"}


def check_keys(cfg: DictConfig) -> None:
    """Keys that no schema field takes (e.g. `+algo.trainig.lr=0.1`, added with `+`) are refused."""
    top = {f.name for f in dataclasses.fields(Config)} | {"hydra"}
    for key in map(str, cfg):
        if key not in top:
            raise RlgraftError(f"`{key}` is not a config key{did_you_mean(key, top)}",
                               fix=f"remove `+{key}=...` or correct its name; `--help` lists the groups")
    for group, schema in GROUPS.items():
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            continue
        fields = {f.name for f in dataclasses.fields(schema)}
        for key in map(str, node):
            if key not in fields:
                hint = did_you_mean(key, fields)
                why = (" (algo.<section> is an AlgorithmConfig builder, e.g. algo.training)"
                       if schema is AlgoConfig else "")
                raise RlgraftError(f"`{group}.{key}` is not a key of `{group}`{hint}{why}",
                                   found=f"keys of `{group}`: {', '.join(sorted(fields))}",
                                   fix=f"correct or remove `{group}.{key}`")


def check(cfg: Config) -> None:
    """Ranges and rules across fields; runs before Ray starts."""
    from rlgraft.stopping import check_stop_keys, named_result_keys, stop_thresholds

    values = flat_values(cfg)
    for key, rule in RANGES.items():
        value = values.get(key)
        if value is None or (key in SCHEDULE_OPTIONS and isinstance(value, list)):
            continue
        if not rule.holds(value):
            default = ", or to null for RLlib's default" if key.startswith("algo.") else ""
            raise RlgraftError(f"`{key}={value!r}` is out of range: it must be {rule.describe()}",
                               fix=f"set {key} to such a value{default}")
    stop = stop_thresholds(cfg.stop)
    if not stop:
        raise RlgraftError("`stop` is empty, so the run would never end",
                           fix="set e.g. stop.num_env_steps_sampled_lifetime=8000")
    for key, value in stop.items():
        typed = f"stop.{key.replace('/', '.')}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RlgraftError(f"stop threshold `{key}` is {value!r}, not a number",
                               fix=f"give a number, e.g. {typed}=8000")
        if key.endswith(COUNTER_SUFFIXES) and value < 0:
            raise RlgraftError(f"`{typed}={value}`: `{key}` counts up from 0, so a negative threshold stops at once",
                               fix=f"set {typed} to the count to reach, e.g. {typed}=8000")
    check_stop_keys(stop)
    named = named_result_keys(cfg.metric, cfg.checkpointing.score_attribute)
    for key, option in [*((k, f"stop key `{k}`") for k in stop), *((k, f"{o}={k}") for k, o in named.items())]:
        if key.startswith("evaluation/") and not cfg.algo.evaluation.get("evaluation_interval"):
            raise RlgraftError(f"{option} is an evaluation result, but this run never evaluates "
                               "(algo.evaluation.evaluation_interval is unset)",
                               fix="set algo.evaluation.evaluation_interval=N, or use the training key "
                                   f"{key.removeprefix('evaluation/')}")
    training = cfg.algo.training
    batch, minibatch = training.get("train_batch_size_per_learner"), training.get("minibatch_size")
    if isinstance(batch, int) and isinstance(minibatch, int) and minibatch > batch:
        raise RlgraftError(f"algo.training.minibatch_size={minibatch} is larger than "
                           f"algo.training.train_batch_size_per_learner={batch}",
                           fix="make the minibatch at most the batch, e.g. algo.training.minibatch_size=128")
    if cfg.mode not in ("max", "min"):
        raise RlgraftError(f"mode={cfg.mode!r} is not 'max' or 'min'", fix="set mode=max or mode=min")
    for name in ("modules", "components"):
        value = getattr(cfg.restore, name)
        if value is not None and (not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
            raise RlgraftError(f"restore.{name} must map names to names, got {value!r}",
                               fix=f"write it as 'restore.{name}={{p1:default_policy}}'")
        if value and not cfg.resume:
            raise RlgraftError(f"restore.{name} is set but there is no checkpoint to restore from",
                               fix="add +resume=PATH")
    check_transfer(cfg)
    if cfg.restore.dry_run and not cfg.resume:
        raise RlgraftError("restore.dry_run=true but there is no checkpoint to plan a restore from",
                           fix="add +resume=PATH")
    if cfg.resume is not None and not str(cfg.resume).strip():
        raise RlgraftError("`+resume=` is empty, so there is nothing to restore",
                           fix="give the checkpoint or run folder, e.g. +resume=outputs/DATE/TIME, or drop +resume")
    for path in (cfg.output_dir, cfg.launch_dir):
        if path is not None and not os.path.isabs(path):
            raise RlgraftError(f"internal path {path!r} is not absolute",
                               fix="pass absolute output_dir/launch_dir")


SELFPLAY_KEYS = {"from": "the module that trains, e.g. p0", "to": "the frozen modules it is copied into, e.g. [p1]",
                 "every": "iterations between snapshots, e.g. 5"}


def check_transfer(cfg: Config) -> None:
    """restore.freeze/unfreeze_after/params/optimizer and `selfplay`, as far as they can be checked
    without the env (module ids are checked against the env in `transfer.check`)."""
    r = cfg.restore
    for name in ("freeze", "params", "accept"):
        value = getattr(r, name)
        if value and not cfg.resume:
            raise RlgraftError(f"restore.{name} is set but there is no checkpoint to restore from",
                               fix="add +resume=PATH (a run without a restore trains every module)")
    if r.unfreeze_after is not None and not r.freeze:
        raise RlgraftError(f"restore.unfreeze_after={r.unfreeze_after} is set but restore.freeze names no module",
                           fix="add 'restore.freeze=[p1]', or drop restore.unfreeze_after")
    graft = bool(r.modules or r.components)
    if r.params and not r.modules:
        raise RlgraftError("restore.params selects parameters of grafted modules, but restore.modules is not set",
                           fix="name the modules, e.g. 'restore.modules={default_policy:default_policy}' "
                               "'restore.params=[encoder.*]'")
    if r.optimizer is not None and r.optimizer.value == "keep" and graft:
        raise RlgraftError("restore.optimizer=keep applies to a full restore; a module graft always starts the "
                           "grafted module's optimizer fresh (its moments belong to another run's updates)",
                           fix="drop restore.optimizer, or drop restore.modules for a full restore")
    sp = cfg.selfplay
    if sp is None:
        return
    if not isinstance(sp, dict):
        raise RlgraftError(f"selfplay={sp!r} is not a mapping", fix="write 'selfplay={from: p0, to: [p1], every: 5}'")
    for key in sp:
        if key not in SELFPLAY_KEYS:
            raise RlgraftError(f"`selfplay.{key}` is not a key of selfplay{did_you_mean(str(key), set(SELFPLAY_KEYS))}",
                               found="keys: " + "; ".join(f"{k}: {v}" for k, v in SELFPLAY_KEYS.items()),
                               fix=f"correct or remove selfplay.{key}")
    missing = [k for k in SELFPLAY_KEYS if sp.get(k) is None]
    if missing:
        raise RlgraftError(f"selfplay lacks {', '.join(missing)}",
                           found="keys: " + "; ".join(f"{k}: {v}" for k, v in SELFPLAY_KEYS.items()),
                           fix="write 'selfplay={from: p0, to: [p1], every: 5}'")
    to = [sp["to"]] if isinstance(sp["to"], str) else sp["to"]
    if not isinstance(sp["from"], str) or not isinstance(to, list) or not all(isinstance(t, str) for t in to) or not to:
        raise RlgraftError(f"selfplay.from must be a module id and selfplay.to a list of module ids, got {sp!r}",
                           fix="write 'selfplay={from: p0, to: [p1], every: 5}'")
    if sp["from"] in to:
        raise RlgraftError(f"selfplay.from={sp['from']!r} is also in selfplay.to: a module cannot be its own frozen "
                           "snapshot", fix="list other modules in selfplay.to, e.g. 'selfplay={from: p0, to: [p1]}'")
    if not COUNT.holds(sp["every"]):
        raise RlgraftError(f"`selfplay.every={sp['every']!r}` is out of range: it must be {COUNT.describe()}",
                           fix="set selfplay.every to the iterations between snapshots, e.g. 5")


def flat_values(cfg: Config) -> dict[str, Any]:
    """Every leaf value by its command-line key (`algo.training.lr`)."""
    container = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out[prefix] = node

    walk(container, "")
    return out


# DefaultModelConfig values by kind (RLlib 2.60 checks none of them before it builds the network in the trial).
MODEL_SIZES = {"fcnet_hiddens", "head_fcnet_hiddens"}
MODEL_COUNTS = {"lstm_cell_size", "max_seq_len"}
MODEL_FLAGS = {"fcnet_use_layernorm", "head_fcnet_use_layernorm", "free_log_std", "vf_share_layers", "use_lstm",
               "lstm_use_prev_action", "lstm_use_prev_reward"}


def check_model_config(model_config: Any, where: str) -> None:
    """Values of RLlib's DefaultModelConfig keys, with RLlib's own lists for activations and initializers:
    `fcnet_hiddens=[0]` or `fcnet_activation=rleu` is refused here, not when the trial builds its network."""
    from ray.rllib.models.utils import get_activation_fn, get_initializer_fn

    if not isinstance(model_config, dict):
        return
    for key, value in model_config.items():
        typed = f"{where}.{key}"
        if value is None or (isinstance(value, dict) and "_target_" in value):  # an object: `objects` checks it
            continue
        if key in MODEL_SIZES and (not isinstance(value, list) or not all(COUNT.holds(v) for v in value)):
            raise RlgraftError(f"`{typed}={value!r}` is out of range: it must be a list of layer sizes, each "
                               "an integer >= 1", fix=f"set e.g. {typed}=[64,64]")
        if key in MODEL_COUNTS and not COUNT.holds(value):
            raise RlgraftError(f"`{typed}={value!r}` is out of range: it must be {COUNT.describe()}",
                               fix=f"set {typed} to such a value, or to null for RLlib's default")
        if key in MODEL_FLAGS and not isinstance(value, bool):
            raise RlgraftError(f"`{typed}={value!r}` is not true or false", fix=f"set {typed}=true or {typed}=false")
        if key == "log_std_clip_param" and not NON_NEGATIVE.holds(value):
            raise RlgraftError(f"`{typed}={value!r}` is out of range: it must be {NON_NEGATIVE.describe()}",
                               fix=f"set {typed} to such a value, e.g. 20.0 (RLlib's default)")
        if key.endswith("_activation"):
            try:
                get_activation_fn(value, framework="torch")
            except (ValueError, TypeError) as exc:
                raise RlgraftError(f"`{typed}={value!r}` is not an activation RLlib knows ({exc})",
                                   fix=f"use one of relu, tanh, elu, swish, silu, linear (or a torch.nn name, "
                                       f"e.g. {typed}=GELU)") from exc
        if key.endswith("_initializer"):
            try:
                get_initializer_fn(value, framework="torch")
            except (ValueError, TypeError, AttributeError) as exc:
                raise RlgraftError(f"`{typed}={value!r}` is not an initializer RLlib knows ({exc})",
                                   fix=f"name a torch.nn.init function, e.g. {typed}=xavier_uniform_") from exc
        if key == "conv_filters" and (not isinstance(value, list) or not all(
                isinstance(f, list) and len(f) in (3, 4) and COUNT.holds(f[0]) for f in value)):
            raise RlgraftError(f"`{typed}={value!r}` is not a list of [out_channels, kernel, stride] filters",
                               fix=f"write e.g. {typed}=[[16,[4,4],2],[32,[4,4],2]]")


def check_rllib(config: Any, cfg: Config) -> None:
    """RLlib's own `AlgorithmConfig.validate()` (no Ray needed), its refusal naming the typed key."""
    try:
        config.validate()
    except Exception as exc:  # RLlib raises ValueError, TypeError, ImportError here
        message = str(exc).split("To suppress all validation errors")[0].strip()
        keys = [k for k in flat_values(cfg) if k.startswith("algo.") and f"`{k.rsplit('.', 1)[-1]}`" in message]
        raise RlgraftError(f"RLlib refuses this config{' (' + ', '.join(keys) + ')' if keys else ''}: {message}",
                           fix="change " + (keys[0] if keys else "the algo.* option it names")) from exc
