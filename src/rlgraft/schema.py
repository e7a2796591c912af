"""Config schema: dataclasses registered in Hydra's ConfigStore, so a typo fails at compose time.

Rules that span several fields live in `validate`, which runs before Ray starts.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from rlgraft.errors import RlgraftError


class Budget(enum.Enum):
    total = "total"  # RLlib's behaviour: counters continue, stop thresholds are totals
    additional = "additional"  # stop thresholds count from the restored checkpoint


class Pick(enum.Enum):
    latest = "latest"
    best = "best"


class Scheduler(enum.Enum):
    fifo = "fifo"
    asha = "asha"


@dataclass
class EnvConfig:
    id: str = "Pendulum-v1"
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Multi-agent: `num_agents` copies of the env (agent ids 0..n-1), agent i -> policy_mapping.format(agent_id=i).
    multi_agent: bool = False
    num_agents: int = 2
    policy_mapping: str = "p{agent_id}"


@dataclass
class AlgoConfig:
    """Each section is passed as keyword arguments to the AlgorithmConfig builder method of that name."""

    name: str = "PPO"
    training: dict[str, Any] = field(default_factory=dict)
    env_runners: dict[str, Any] = field(default_factory=dict)
    rl_module: dict[str, Any] = field(default_factory=dict)
    learners: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    framework: dict[str, Any] = field(default_factory=dict)
    reporting: dict[str, Any] = field(default_factory=dict)
    debugging: dict[str, Any] = field(default_factory=dict)
    fault_tolerance: dict[str, Any] = field(default_factory=dict)
    multi_agent: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckpointConfig:
    frequency: int = 0  # every N iterations; 0 = only at the end
    at_end: bool = True
    num_to_keep: int | None = None
    score_attribute: str | None = None
    # How often Tune snapshots its experiment state (which checkpoints exist). A crash loses at most
    # this much bookkeeping beyond `frequency`; Tune's own default throttles to >= 10 s.
    experiment_state_s: float = 2.0


@dataclass
class ResourcesConfig:
    # Used when algo.env_runners.num_env_runners is unset: EnvRunners are fitted to the cluster, up to this.
    max_env_runners: int = 2
    max_concurrent_trials: int | None = None  # None: as many as fit


@dataclass
class RayConfig:
    address: str | None = None  # None: start a local runtime; "auto" or "host:port": connect
    num_cpus: int | None = None  # local runtime only; None: all cores
    include_dashboard: bool = False
    logging_level: str = "WARNING"
    log_to_driver: bool = False


@dataclass
class RestoreConfig:
    # Typed Any (checked in `validate`): Hydra then replaces the value on `restore.modules={p1:p0}`,
    # where a typed dict node would refuse new keys in struct mode.
    modules: Any = None  # target module id -> source module id
    components: Any = None  # target component -> source path
    budget: Budget = Budget.total
    pick: Pick = Pick.latest
    verify: bool = True


@dataclass
class TuneConfig:
    num_samples: int = 1
    scheduler: Scheduler = Scheduler.fifo
    # "algo.<section>.<key>" -> {grid: [...]} | {choice: [...]} | {uniform: [lo, hi]} | ...
    search: dict[str, Any] = field(default_factory=dict)
    max_failures: int = 0
    grace_period: int = 2  # ASHA: iterations before a trial may be stopped


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    checkpointing: CheckpointConfig = field(default_factory=CheckpointConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    restore: RestoreConfig = field(default_factory=RestoreConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    stop: dict[str, Any] = field(default_factory=lambda: {"num_env_steps_sampled_lifetime": 8000})
    seed: int | None = 0
    resume: str | None = None
    name: str = "rlgraft"
    metric: str = "env_runners/episode_return_mean"
    mode: str = "max"
    # Where the run writes; filled from Hydra's job output dir (absolute) when empty.
    output_dir: str | None = None
    # Where relative paths such as `resume` resolve; filled from the launch directory when empty.
    launch_dir: str | None = None


@dataclass
class EvaluateConfig:
    checkpoint: str | None = None
    module_id: str | None = None  # export: one module; evaluate: all the env needs
    episodes: int = 10
    explore: bool = False
    render: bool = False
    seed: int = 0
    pick: Pick = Pick.latest
    metric: str = "env_runners/episode_return_mean"
    env: EnvConfig | None = None  # default: the env the checkpoint was trained on
    output_dir: str | None = None


GROUPS = {
    "env": EnvConfig,
    "algo": AlgoConfig,
    "checkpointing": CheckpointConfig,
    "resources": ResourcesConfig,
    "ray": RayConfig,
    "restore": RestoreConfig,
    "tune": TuneConfig,
}


def register() -> None:
    """Register the schema so every YAML in conf/ is validated against it at compose time."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    for group, node in GROUPS.items():
        cs.store(group=group, name=f"{group}_schema", node=node)


def to_config(cfg: DictConfig | Config) -> Config:
    """DictConfig -> typed Config object (plain Python, picklable)."""
    if isinstance(cfg, Config):
        return cfg
    typed = cfg if OmegaConf.get_type(cfg) is Config else OmegaConf.merge(OmegaConf.structured(Config), cfg)
    obj = OmegaConf.to_object(typed)
    assert isinstance(obj, Config)
    return obj


def to_evaluate_config(cfg: DictConfig | EvaluateConfig) -> EvaluateConfig:
    """DictConfig -> typed EvaluateConfig (evaluate and export)."""
    if isinstance(cfg, EvaluateConfig):
        return cfg
    obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EvaluateConfig), cfg))
    assert isinstance(obj, EvaluateConfig)
    return obj


def validate(cfg: Config) -> None:
    """Cross-field rules, checked before Ray starts."""
    from rlgraft.stopping import stop_thresholds

    stop = stop_thresholds(cfg.stop)
    if not stop:
        raise RlgraftError("`stop` is empty, so the run would never end",
                           fix="set e.g. stop.num_env_steps_sampled_lifetime=8000")
    for key, value in stop.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RlgraftError(f"stop threshold `{key}` is {value!r}, not a number",
                               fix=f"give a number, e.g. stop.{key.replace('/', '.')}=8000")
    if cfg.env.multi_agent and cfg.env.num_agents < 1:
        raise RlgraftError(f"env.num_agents={cfg.env.num_agents} but a multi-agent env needs "
                           "at least one agent", fix="set env.num_agents=2")
    if cfg.mode not in ("max", "min"):
        raise RlgraftError(f"mode={cfg.mode!r} is not 'max' or 'min'", fix="set mode=max or mode=min")
    for name in ("modules", "components"):
        value = getattr(cfg.restore, name)
        if value is not None and (not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
            raise RlgraftError(f"restore.{name} must map names to names, got {value!r}",
                               fix=f"write it as 'restore.{name}={{p1:default_policy}}'")
    if cfg.restore.modules and not cfg.resume:
        raise RlgraftError("restore.modules is set but there is no checkpoint to restore from",
                           fix="add +resume=PATH")
    if cfg.restore.components and not cfg.resume:
        raise RlgraftError("restore.components is set but there is no checkpoint to restore from",
                           fix="add +resume=PATH")
    if cfg.tune.num_samples < 1:
        raise RlgraftError(f"tune.num_samples={cfg.tune.num_samples} must be >= 1",
                           fix="set tune.num_samples=1")
    for path in (cfg.output_dir, cfg.launch_dir):
        if path is not None and not os.path.isabs(path):
            raise RlgraftError(f"internal path {path!r} is not absolute",
                               fix="pass absolute output_dir/launch_dir")
