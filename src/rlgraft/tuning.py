"""The one module that talks to Ray Tune: Tuner set-up, stop guard, progress lines, trial outcomes."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.stopper import Stopper
from ray.tune.utils import flatten_dict

from rlgraft import runtime, storage, timing
from rlgraft.errors import RlgraftError, did_you_mean
from rlgraft.schema import Config
from rlgraft.stopping import matching, named_result_keys, reached

# Results that never carry the key after this many iterations make the run end with an error.
STOP_KEY_GRACE_ITERATIONS = 3


class StopGuard(Stopper):
    """Tune's dict stop (value >= threshold), plus per-agent thresholds and an error for keys the
    results never carry.

    A key with `*` (e.g. `env_runners/agent_episode_returns_mean/*`) is reached when every result key
    it matches is at or above its threshold, so "-300 per agent" is one entry. Tune only warns
    about an unknown stop key and then trains forever.
    """

    def __init__(self, thresholds: dict[str, float], grace: int = STOP_KEY_GRACE_ITERATIONS,
                 named: dict[str, str] | None = None):
        self.thresholds = dict(thresholds)
        self.grace = grace
        # Other result keys the config names (`metric`, `checkpointing.score_attribute`): key -> option.
        # Tune only warns about them, and a sweep's objective or checkpoint ranking is then empty.
        self.named = {k: v for k, v in (named or {}).items() if k not in self.thresholds}
        self.missing: dict[str, list[str]] = {}  # key -> keys the results do have (for the message)
        self._seen: set[str] = set()
        self._counted: dict[str, int] = {}  # trial -> results since its first finished episode

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        flat = flatten_dict(result, delimiter="/")
        self._seen |= set(flat)
        if any(reached(flat, key, limit, self._seen) for key, limit in self.thresholds.items()):
            return True
        # Return means appear once an episode has finished, which takes several iterations when
        # episodes are longer than an iteration's share of each env (200-step Pendulum episodes in
        # 2000-step batches over 40 envs: 4 iterations), so the grace counts from the first one.
        episodes = flat.get("env_runners/num_episodes_lifetime")
        if episodes is None or episodes > 0:
            self._counted[trial_id] = self._counted.get(trial_id, 0) + 1
        if self._counted.get(trial_id, 0) >= self.grace:
            evaluated = any(s.startswith("evaluation/") for s in self._seen)  # evaluation keys wait for one
            absent = [k for k in [*self.thresholds, *self.named] if not matching(self._seen, k)
                      and (evaluated or not k.startswith("evaluation/"))]
            if absent:
                for key in absent:
                    self.missing[key] = sorted(self._seen)
                return True
        return False

    def stop_all(self) -> bool:
        return bool(self.missing)

    def raise_if_missing(self) -> None:
        if not self.missing:
            return
        key, seen = next(iter(self.missing.items()))
        what = f"{self.named[key]}={key}" if key in self.named else f"stop key `{key}`"
        raise RlgraftError(
            f"{what} never appeared in the training results "
            f"(checked for {self.grace} iterations after the first finished episode){did_you_mean(key, seen)}",
            found="result keys look like: " + ", ".join(k for k in seen if "lifetime" in k or
                                                         k.endswith("return_mean"))[:400],
            fix=(f"set {self.named[key]} to a key from the results, e.g. "
                 f"{self.named[key]}=env_runners/episode_return_mean" if key in self.named
                 else "use a key from the results, nested with dots, e.g. "
                 "stop.num_env_steps_sampled_lifetime=8000 or +stop.env_runners.episode_return_mean=-300"),
        )


class Progress(tune.Callback):
    """One readable line per iteration instead of Ray's status tables."""

    def __init__(self, metric: str, printer: Any = print):
        self.metric, self.printer = metric, printer
        self._start = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles callbacks into tuner.pkl; the printer stays out (Ray's tqdm_ray swaps
        `builtins.print`, and a swapped print no longer pickles by name). A restored one prints."""
        return {**self.__dict__, "printer": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.printer = state.get("printer") or print

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        flat = flatten_dict(result, delimiter="/")
        value = flat.get(self.metric)
        shown = f"{value:9.1f}" if isinstance(value, int | float) and not math.isnan(value) else "      n/a"
        self.printer(
            f"[{trial.trial_id}] iter {flat.get('training_iteration', 0):4d} | env steps "
            f"{int(flat.get('num_env_steps_sampled_lifetime', 0)):8d} | {self.metric.rsplit('/', 1)[-1]} "
            f"{shown} | {flat.get('time_this_iter_s', 0.0):5.1f} s/iter | "
            f"{time.monotonic() - self._start:6.1f} s"
        )

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        timing.mark("tune trial started", once=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.printer(f"[{trial.trial_id}] ERROR: see {trial.local_path}/error.txt")


@dataclass(frozen=True)
class TrialDirname:
    """`PPO_<trial id>_<searched values>`: Tune's default puts `str(config.env)` in the name, which for
    an env class is its repr."""

    def __call__(self, trial: Any) -> str:
        return f"{trial.trainable_name}_{trial.trial_id}_{trial.experiment_tag}"[:120]


@dataclass
class TrialOutcome:
    trial_id: str
    path: str
    checkpoint: str | None
    metrics: dict[str, Any]
    status: str
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class TuneRun:
    trainable: Any
    param_space: Any
    storage_path: str
    name: str
    stop: dict[str, float]
    metric: str
    mode: str
    num_samples: int = 1
    max_concurrent_trials: int = 1
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool = True
    num_to_keep: int | None = None
    score_attribute: str | None = None
    max_failures: int = 0
    experiment_state_s: float = 2.0
    scheduler: str = "fifo"
    grace_period: int = 2
    named_keys: dict[str, str] = field(default_factory=dict)  # metric, score attribute -> their option

    @classmethod
    def of(cls, c: Config, name: str, param_space: Any, trainable: Any, storage_path: str, stop: dict[str, float],
           max_concurrent_trials: int) -> TuneRun:
        """The Tune settings of a typed rlgraft config."""
        return cls(trainable=trainable, param_space=param_space, storage_path=storage_path, name=name,
                   stop=stop, metric=c.metric, mode=c.mode, num_samples=c.tune.num_samples,
                   max_concurrent_trials=max_concurrent_trials,
                   checkpoint_frequency=c.checkpointing.frequency, checkpoint_at_end=c.checkpointing.at_end,
                   num_to_keep=c.checkpointing.num_to_keep, score_attribute=c.checkpointing.score_attribute,
                   max_failures=c.tune.max_failures, experiment_state_s=c.checkpointing.experiment_state_s,
                   scheduler=c.tune.scheduler.value, grace_period=c.tune.grace_period,
                   named_keys=named_result_keys(c.metric, c.checkpointing.score_attribute))


def _scheduler(run: TuneRun) -> Any:
    if run.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(metric=run.metric, mode=run.mode, grace_period=run.grace_period)
    return None


def fit(run: TuneRun, *, printer: Any = print, restore: bool = False,
        loggers: list[Any] | None = None) -> tuple[list[TrialOutcome], StopGuard]:
    """Run (or resume) the Tune experiment and collect one outcome per trial; `loggers` are the
    trackers of `logger.*` (`tracking.build`), beside the progress lines."""
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = str(run.experiment_state_s)  # read by Tune's controller
    if runtime.workers_warm():  # the trial may take a warmed idle worker: its env var is set already
        from ray.tune.execution import class_cache

        class_cache.DEFAULT_ENV_VARS.pop("PL_DISABLE_FORK", None)
    guard = StopGuard(run.stop, named=run.named_keys)
    run_config = tune.RunConfig(
        name=run.name,
        storage_path=run.storage_path,
        stop=guard,
        verbose=0,
        callbacks=[Progress(run.metric, printer), *(loggers or [])],
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=run.num_to_keep,
            checkpoint_frequency=run.checkpoint_frequency,
            checkpoint_at_end=run.checkpoint_at_end,
            checkpoint_score_attribute=run.score_attribute,
        ),
        failure_config=tune.FailureConfig(max_failures=run.max_failures),
    )
    experiment = storage.join(run.storage_path, run.name)
    if restore and tune.Tuner.can_restore(experiment):
        tuner = tune.Tuner.restore(experiment, trainable=run.trainable, resume_errored=True,
                                   param_space=run.param_space)
    else:
        tuner = tune.Tuner(
            run.trainable,
            param_space=run.param_space,
            run_config=run_config,
            tune_config=tune.TuneConfig(
                num_samples=run.num_samples,
                max_concurrent_trials=run.max_concurrent_trials,
                scheduler=_scheduler(run),
                trial_dirname_creator=TrialDirname(),
            ),
        )
    grid = tuner.fit()
    outcomes = []
    for i in range(len(grid)):
        result = grid[i]
        metrics = flatten_dict({k: v for k, v in (result.metrics or {}).items() if k != "config"},
                               delimiter="/")
        outcomes.append(TrialOutcome(
            trial_id=str(metrics.get("trial_id", Path(result.path).name)),
            path=storage.uri_of(result.filesystem, result.path),  # Tune gives object-store paths without a scheme
            checkpoint=storage.uri_of(result.checkpoint.filesystem, result.checkpoint.path) if result.checkpoint
            else None,
            metrics=metrics,
            status="ERROR" if result.error else "TERMINATED",
            error=str(result.error).strip().splitlines()[-1][:500] if result.error else None,
            config={k: v for k, v in (result.config or {}).items() if _plain(v) or k == "_model_config"},
        ))
    return outcomes, guard


def can_restore(storage_path: str, name: str) -> bool:
    return bool(tune.Tuner.can_restore(storage.join(storage_path, name)))


def _plain(v: Any) -> bool:
    return isinstance(v, str | int | float | bool | type(None))
