"""Config schema: dataclasses registered in Hydra's ConfigStore, so a typo fails at compose time.

Value ranges and rules that span several fields live in `rules`, which runs before Ray starts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

T = TypeVar("T")


class Budget(enum.Enum):
    total = "total"  # RLlib's behaviour: counters continue, stop thresholds are totals
    additional = "additional"  # stop thresholds count from the restored checkpoint


class Pick(enum.Enum):
    latest = "latest"
    best = "best"


class Optimizer(enum.Enum):
    keep = "keep"  # a full restore carries the checkpoint's optimizer state (RLlib's behaviour)
    reset = "reset"  # a full restore starts the optimizer fresh, as a new build has it


class Scheduler(enum.Enum):
    fifo = "fifo"
    asha = "asha"


@dataclass
class EnvConfig:
    # A gymnasium id, gymnasium's `module:Id`, or `module:attribute` (an env class or factory).
    id: str = "Pendulum-v1"
    # gym.make keywords for an id; the env_config dict for a class or one-argument factory (RLlib's
    # convention); keywords for a keyword factory (PettingZoo's `parallel_env(**kwargs)`).
    kwargs: dict[str, Any] = field(default_factory=dict)
    # N copies of a single-agent env (agent ids 0..N-1); null: the env as it is.
    num_agents: int | None = None
    # Agent id -> module id: a format string (`p{agent_id}`), `shared`, or {agent-id glob: module id}.
    # Typed Any so that a mapping replaces the string on the command line.
    policy_mapping: Any = "p{agent_id}"


@dataclass
class AlgoConfig:
    """Each section is passed as keyword arguments to the AlgorithmConfig builder method of that name
    (every builder of RLlib 2.60's AlgorithmConfig but `api_stack`, which `algo.py` refuses)."""

    name: str = "PPO"
    training: dict[str, Any] = field(default_factory=dict)
    env_runners: dict[str, Any] = field(default_factory=dict)
    rl_module: dict[str, Any] = field(default_factory=dict)
    learners: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    callbacks: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    multi_agent: dict[str, Any] = field(default_factory=dict)
    framework: dict[str, Any] = field(default_factory=dict)
    reporting: dict[str, Any] = field(default_factory=dict)
    debugging: dict[str, Any] = field(default_factory=dict)
    fault_tolerance: dict[str, Any] = field(default_factory=dict)
    offline_data: dict[str, Any] = field(default_factory=dict)
    checkpointing: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    python_environment: dict[str, Any] = field(default_factory=dict)
    experimental: dict[str, Any] = field(default_factory=dict)
    api_stack: dict[str, Any] = field(default_factory=dict)


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
    # Torch's threads in each process that samples or learns (the trial, EnvRunners, learners); None: torch's.
    torch_threads: int | None = None


@dataclass
class RayConfig:
    address: str | None = None  # None: start a local runtime; "auto" or "host:port": connect
    num_cpus: int | None = None  # local runtime only; None: all cores
    include_dashboard: bool = False
    logging_level: str = "WARNING"
    log_to_driver: bool = False
    # Imported by each Ray worker of a local runtime as it starts, before any trial needs it (`[]`: off).
    warm_imports: list[str] = field(default_factory=lambda: ["ray.rllib.algorithms.ppo", "torch._dynamo"])


@dataclass
class RestoreConfig:
    # Typed Any (checked in `validate`): Hydra then replaces the value on `restore.modules={p1:p0}`,
    # where a typed dict node would refuse new keys in struct mode.
    modules: Any = None  # target module id -> source module id
    components: Any = None  # target component -> source path
    budget: Budget = Budget.total
    pick: Pick = Pick.latest
    verify: bool = True
    dry_run: bool = False  # resolve PATH, run every check, print the plan, exit without starting Ray
    # Modules the learner does not update (RLlib's policies_to_train); they still act in the env.
    freeze: list[str] = field(default_factory=list)
    unfreeze_after: int | None = None  # env steps after the restore; then the frozen modules train
    # Globs over parameter names (`encoder.*`): only matching parameters are copied and checked.
    params: list[str] = field(default_factory=list)
    # null: keep on a full restore; a module graft always starts the grafted module's optimizer fresh.
    optimizer: Optimizer | None = None
    # Architecture keys allowed to differ between the checkpoint's modules and this run's, on purpose
    # (`model_config.fcnet_activation`, `module_class`, `env_to_module`, ...); any other difference is refused.
    accept: list[str] = field(default_factory=list)


@dataclass
class TuneConfig:
    num_samples: int = 1
    scheduler: Scheduler = Scheduler.fifo
    # "algo.<section>.<key>" -> {grid: [...]} | {choice: [...]} | {uniform: [lo, hi]} | ...
    search: dict[str, Any] = field(default_factory=dict)
    max_failures: int = 0
    grace_period: int = 2  # ASHA: iterations before a trial may be stopped


class WandbMode(enum.Enum):
    online = "online"
    offline = "offline"  # writes the run under the trial folder, no network; `wandb sync` uploads it later
    disabled = "disabled"


@dataclass
class MlflowLogger:
    """`logger=mlflow`: one MLflow run per Tune trial (`rlgraft.trackers.MlflowTracker`)."""

    _target_: str = "rlgraft.trackers.MlflowTracker"
    # null: MLFLOW_TRACKING_URI, else a local store (`mlruns/`) in the run's (or the sweep's) output dir.
    tracking_uri: str | None = None
    # null: MLFLOW_EXPERIMENT_NAME, else the preset's `name` (a sweep: the name and the sweep dir).
    experiment_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    save_artifact: bool = False  # Tune's option: upload each whole trial folder when the trial ends
    # MLflow's HTTP settings (MLFLOW_HTTP_REQUEST_TIMEOUT, _MAX_RETRIES) unless set in the environment:
    # a server that stops answering costs seconds once, not MLflow's default minutes per request.
    request_timeout: float = 5.0
    request_max_retries: int = 2


@dataclass
class WandbLogger:
    """`logger=wandb`: one W&B run per Tune trial (`rlgraft.trackers.WandbTracker`)."""

    _target_: str = "rlgraft.trackers.WandbTracker"
    project: str = "rlgraft"
    entity: str | None = None
    group: str | None = None  # null: the sweep dir for a sweep, else the Tune experiment
    mode: WandbMode = WandbMode.online
    tags: list[str] = field(default_factory=list)
    upload_checkpoints: bool = False  # Tune's option: upload every checkpoint as a W&B artifact
    excludes: list[str] = field(default_factory=list)  # Tune's option: result keys not logged


@dataclass
class TensorboardLogger:
    """`logger=tensorboard`: Tune's TensorBoard files, stepped by env steps (`rlgraft.trackers.TensorboardTracker`)."""

    _target_: str = "rlgraft.trackers.TensorboardTracker"


@dataclass
class LoggerConfig:
    """Trackers by name; null: not used. Tune's CSV, JSON and TensorBoard files are written either way."""

    mlflow: MlflowLogger | None = None
    wandb: WandbLogger | None = None
    tensorboard: TensorboardLogger | None = None


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    checkpointing: CheckpointConfig = field(default_factory=CheckpointConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    restore: RestoreConfig = field(default_factory=RestoreConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    stop: dict[str, Any] = field(default_factory=lambda: {"num_env_steps_sampled_lifetime": 8000})
    seed: int | None = 0
    resume: str | None = None
    # Self-play snapshots, e.g. {from: p0, to: [p1], every: 5}: every `every` iterations the weights of
    # `from` are copied into each (frozen) module of `to`. Typed Any (`from` is a Python keyword);
    # its keys and values are checked in `rules`.
    selfplay: Any = None
    name: str = "rlgraft"
    metric: str = "env_runners/episode_return_mean"
    mode: str = "max"
    # Where Tune's storage goes (checkpoints, trial results): null, the run's output dir (`tune/` in it); or a
    # URI of any filesystem pyarrow or fsspec opens (`s3://bucket/prefix`, `gs://...`), or an absolute folder
    # every node sees. Each run or sweep job gets its own prefix below it (the output dir's last parts).
    # Endpoints and credentials come from the standard places (AWS_ENDPOINT_URL, AWS_* variables, ~/.aws).
    storage: str | None = None
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


@dataclass
class RecordConfig(EvaluateConfig):
    """`rlgraft record`: episodes from a trained policy in RLlib's offline format."""

    episodes: int = 100
    output: str | None = None  # null: episodes/ in the command's output dir


GROUPS = {
    "env": EnvConfig,
    "algo": AlgoConfig,
    "checkpointing": CheckpointConfig,
    "resources": ResourcesConfig,
    "ray": RayConfig,
    "restore": RestoreConfig,
    "tune": TuneConfig,
    "logger": LoggerConfig,
}


def register() -> None:
    """Register the schema so every YAML in conf/ is validated against it at compose time."""
    from rlgraft.launcher import register_plugin

    register_plugin()  # hydra/launcher=rlgraft
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="record_schema", node=RecordConfig)
    for group, node in GROUPS.items():
        cs.store(group=group, name=f"{group}_schema", node=open_dicts(node))
    # One schema per tracker, so each logger file types only its own key and a list of them merges.
    for tracker in fields(LoggerConfig):
        cs.store(group="logger", name=f"{tracker.name}_schema", node={tracker.name: TRACKERS[tracker.name]})


TRACKERS: dict[str, type] = {"mlflow": MlflowLogger, "wandb": WandbLogger, "tensorboard": TensorboardLogger}

# Free-form dicts: open to new keys, so `env.kwargs={g: 9.81}` and `algo.training.use_kl_loss=false`
# work without `+`. Every other key stays closed and fails at compose time; the keys inside
# `algo.<section>` are checked against RLlib's builder signatures (`algo.check_section`).
OPEN_DICTS = {EnvConfig: ("kwargs",), AlgoConfig: tuple(f.name for f in fields(AlgoConfig) if f.name != "name")}


def open_dicts(node: type) -> Any:
    """The schema node with its free-form dicts open to new keys."""
    if node not in OPEN_DICTS:
        return node
    structured = OmegaConf.structured(node)
    for name in OPEN_DICTS[node]:
        OmegaConf.set_struct(structured[name], False)
    return structured


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
    return _typed(cfg, EvaluateConfig)


def to_record_config(cfg: DictConfig | RecordConfig) -> RecordConfig:
    """DictConfig -> typed RecordConfig (record)."""
    return _typed(cfg, RecordConfig)


def _typed(cfg: Any, cls: type[T]) -> T:
    if isinstance(cfg, cls):
        return cfg
    obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), cfg))
    assert isinstance(obj, cls)
    return obj
