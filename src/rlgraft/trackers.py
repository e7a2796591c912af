"""The Tune callbacks that track runs: MLflow, W&B and TensorBoard, stepped by env steps, one tracked run
per trial that a resumed trial continues.

Each subclasses Tune's own callback and changes what falls short for RL runs in Ray 2.60 (see
`rlgraft.tracking` and the README's Tracking section). Kept apart from `tracking` because importing
Tune's integrations imports mlflow and wandb (1.2 s measured), which a run without a logger never pays.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem, _WandbLoggingActor
from ray.tune.logger import TBXLoggerCallback
from ray.tune.utils import flatten_dict

from rlgraft.tracking import (
    METRIC_NAME,
    STEP,
    Context,
    Tracked,
    first_line,
    local_dir,
    read_runs,
    run_name,
    trial_dir,
    write_run,
)

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

log = logging.getLogger(__name__)
# MLflow settings rlgraft set itself (a later run may set them again); the user's own stay.
_HTTP_SET_HERE: set[str] = set()


def _http_defaults(timeout: float, retries: int) -> None:
    """MLflow reads these per request: seconds, not MLflow's default minutes, for a server that went away."""
    for key, value in (("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(math.ceil(timeout)))),
                       ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries)),
                       ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                       ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")):  # `tracking.finish` says where
        if key not in os.environ or key in _HTTP_SET_HERE:
            os.environ[key] = value
            _HTTP_SET_HERE.add(key)


@dataclass
class _Ledger:
    """What one trial's tracked run did not receive, for the closing lines."""

    error: str | None = None
    iterations: list[int] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def entry(self) -> dict[str, Any]:
        return {"error": self.error, "iterations": self.iterations, "other": self.other}


class MlflowTracker(Tracked, MLflowLoggerCallback):
    """Tune's MLflowLoggerCallback, with the points it misses for RL runs changed:

    - params: rlgraft's flattened config (a searched trial's own values), not Tune's internal dict;
    - steps: `num_env_steps_sampled_lifetime`; one `log_batch` per result instead of a request per metric;
    - a trial's run id is kept in its folder, so a resumed trial continues its run;
    - a server that stops answering is noted once and skipped; training goes on (the trial's local files
      are complete) and `finish` says what it did not get.
    """

    def __init__(self, tracking_uri: str | None = None, *, experiment_name: str | None = None,
                 tags: dict[str, str] | None = None, save_artifact: bool = False, request_timeout: float = 5.0,
                 request_max_retries: int = 2, artifact_location: str | None = None,
                 context: Context | None = None):
        super().__init__(tracking_uri, experiment_name=experiment_name, tags=dict(tags or {}),
                         save_artifact=save_artifact)
        self.request_timeout, self.request_max_retries = request_timeout, request_max_retries
        self.artifact_location = artifact_location
        self.context = context or Context({}, {}, "rlgraft", os.getcwd(), os.getcwd())

    def setup(self, *args: Any, **kwargs: Any) -> None:
        _http_defaults(self.request_timeout, self.request_max_retries)
        self._trial_runs: dict[str, str] = {}
        self._ledgers: dict[str, _Ledger] = {}
        self._down: str | None = None
        self._client: Any = None
        # `mlflow.set_tracking_uri` (in Tune's setup) also sets $MLFLOW_TRACKING_URI, which the next run in
        # this process (a sweep job, a notebook cell) would then take for the user's own: put it back.
        before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        try:
            self.mlflow_util.setup_mlflow(tracking_uri=self.tracking_uri, experiment_name=self.experiment_name,
                                          artifact_location=self.artifact_location)
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        except Exception as exc:  # tracking never stops training
            self._down = first_line(exc)
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_client"}

    def _send(self, trial: Trial, what: str, fn: Any, iteration: int | None = None) -> Any:
        ledger = self._ledgers.setdefault(trial.trial_id, _Ledger())
        if self._down is None and self._client is not None and fn is not None:
            try:
                return fn()
            except Exception as exc:
                self._down = first_line(exc)
                log.warning("rlgraft: MLflow stopped answering (%s); training goes on", self._down)
        ledger.error = ledger.error or self._down
        if iteration is not None:
            if iteration not in ledger.iterations:
                ledger.iterations.append(iteration)
        elif what not in ledger.other:
            ledger.other.append(what)
        if trial.path:
            entry = read_runs(trial_dir(trial)).get("mlflow", {})
            write_run(trial_dir(trial), "mlflow", {**entry, "lost": ledger.entry()})
        return None

    def log_trial_start(self, trial: Trial) -> None:
        if trial.trial_id in self._trial_runs:
            return
        assert trial.path
        previous = read_runs(trial_dir(trial)).get("mlflow")
        if previous and previous.get("tracking_uri") == self.tracking_uri and previous.get("run_id"):
            run_id = previous["run_id"]  # a resumed trial (Tuner.restore after a crash): the same run
            self._trial_runs[trial.trial_id] = run_id
            resumes = int(previous.get("resumes", 0)) + 1
            write_run(trial_dir(trial), "mlflow", {**previous, "resumes": resumes})
            self._send(trial, "resume", lambda: (self._client.update_run(run_id, status="RUNNING"),
                                                 self._client.set_tag(run_id, "rlgraft.resumes", str(resumes))))
            return
        from mlflow.entities import Param

        tags = {**self.context.tags, **(self.tags or {}), "trial_name": str(trial),
                "rlgraft.trial_id": trial.trial_id, "rlgraft.trial_dir": trial_dir(trial)}
        run = self._send(trial, "the run", lambda: self._client.create_run(
            self.mlflow_util.experiment_id, run_name=run_name(self.context, trial), tags=tags))
        if run is None:
            return
        run_id = run.info.run_id
        self._trial_runs[trial.trial_id] = run_id
        write_run(trial_dir(trial), "mlflow", {"run_id": run_id, "tracking_uri": self.tracking_uri,
                                         "experiment_id": self.mlflow_util.experiment_id,
                                         "experiment_name": self.experiment_name})
        params = [Param(k[:250], v[:6000]) for k, v in self.context.trial_params(trial.config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            chunk = params[i:i + 100]
            self._send(trial, "params", lambda chunk=chunk: self._client.log_batch(run_id, params=chunk))

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        run_id = self._trial_runs.get(trial.trial_id)
        it = int(result.get("training_iteration", iteration))
        if run_id is None:  # the server was gone before the run existed
            if self._down:
                self._send(trial, "results", None, iteration=it)
            return
        step = int(result.get(STEP) or it)
        stamp = int(float(result.get("timestamp", time.time())) * 1000)
        metrics = [Metric(METRIC_NAME.sub("_", k)[:250], float(v), stamp, step)
                   for k, v in flatten_dict({k: v for k, v in result.items() if k != "config"},
                                            delimiter="/").items()
                   if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
        for i in range(0, max(len(metrics), 1), 1000):  # MLflow takes at most 1000 metrics per batch
            chunk = metrics[i:i + 1000]
            self._send(trial, "results", lambda chunk=chunk: self._client.log_batch(run_id, metrics=chunk),
                       iteration=it)

    def log_trial_save(self, trial: Trial) -> None:
        run_id = self._trial_runs.get(trial.trial_id)
        if run_id and trial.checkpoint:
            path = trial.checkpoint.path
            self._send(trial, "the checkpoint path", lambda: self._client.set_tag(run_id, "rlgraft.checkpoint", path))

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        run_id = self._trial_runs.get(trial.trial_id)
        if run_id is None:
            return
        if self.should_save_artifact and trial.local_path:
            path = trial.local_path
            self._send(trial, "the trial folder", lambda: self._client.log_artifacts(run_id, path))
        status = "FAILED" if failed else "FINISHED"
        self._send(trial, "the end of the run", lambda: self._client.set_terminated(run_id, status))


class _EnvStepWandbActor(_WandbLoggingActor):
    """Tune's W&B logging actor, stepping charts by env steps and keeping Tune's dict out of the config."""

    def __init__(self, *args: Any, **kwargs: Any):
        self._upload = bool(kwargs.pop("rlgraft_upload_checkpoints", False))
        super().__init__(*args, **kwargs)

    def run(self) -> None:
        # Tune's loop, with every chart's x-axis the env-step metric. W&B's step stays the iteration: an
        # offline resume restarts W&B's own counter at 0 (no server to ask), and the iteration goes on
        # from the restored checkpoint.
        os.environ["WANDB_START_METHOD"] = "thread"
        run = self._wandb.init(*self.args, **self.kwargs)
        run.define_metric(STEP)
        run.define_metric("*", step_metric=STEP)
        while True:
            item_type, item = self.queue.get()
            if item_type == _QueueItem.END:
                break
            if item_type == _QueueItem.CHECKPOINT:
                run.summary["checkpoint"] = item
                if self._upload:
                    self._handle_checkpoint(item)
                continue
            metrics, config_update = self._handle_result(item)
            try:
                run.config.update(config_update, allow_val_change=True)
                run.log(metrics, step=metrics.get("training_iteration"))
            except Exception as exc:  # a flaky network loses a point, never the trial
                log.warning("rlgraft: W&B did not log a result: %s", exc)
        run.finish()

    def _handle_result(self, result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return super()._handle_result({k: v for k, v in result.items() if k != "config"})


class WandbTracker(Tracked, WandbLoggerCallback):
    """Tune's WandbLoggerCallback, with rlgraft's config as the run config, env steps as the x-axis, the
    sweep as the group, and the W&B run id kept in the trial folder (`resume="allow"`), so a resumed trial
    continues its run (Tune starts every trial with `resume=False` and a new id)."""

    _logger_actor_cls = _EnvStepWandbActor

    def __init__(self, project: str = "rlgraft", *, entity: str | None = None, group: str | None = None,
                 mode: str = "online", tags: list[str] | None = None, upload_checkpoints: bool = False,
                 excludes: list[str] | None = None, context: Context | None = None):
        super().__init__(project=project, group=group, excludes=list(excludes or []), entity=entity, mode=mode)
        self.rlgraft_upload = upload_checkpoints
        self.user_tags = list(tags or [])
        self.context = context or Context({}, {}, "rlgraft", os.getcwd(), os.getcwd())

    def setup(self, *args: Any, **kwargs: Any) -> None:
        # Tune's setup demands an API key even for an offline run, which never uses one.
        if self.kwargs.get("mode") in ("offline", "disabled"):
            return
        super().setup(*args, **kwargs)

    def log_trial_start(self, trial: Trial) -> None:
        if trial in self._trial_logging_futures:
            return
        from wandb.sdk.lib.runid import generate_id

        assert trial.path
        previous = read_runs(trial_dir(trial)).get("wandb") or {}
        run_id = previous.get("run_id") or generate_id()
        resumes = int(previous.get("resumes", -1)) + 1
        write_run(trial_dir(trial), "wandb", {"run_id": run_id, "project": self.project,
                                               "group": self._group(trial), "dir": local_dir(trial),
                                               "mode": self.kwargs.get("mode"), "resumes": resumes})
        config = {**self.context.trial_params(trial.config), **self.context.tags}
        tags = [self.context.tags.get("rlgraft.preset", "rlgraft"), *self.user_tags]
        self._start_logging_actor(
            trial, [*self._exclude_results, *self.excludes, "config"],
            id=run_id, name=run_name(self.context, trial), resume="allow", reinit=True, allow_val_change=True,
            group=self._group(trial), project=self.project, config=config, dir=local_dir(trial),
            tags=tags[:64], rlgraft_upload_checkpoints=self.rlgraft_upload, **self.kwargs)

    def _group(self, trial: Trial) -> str:
        return (self.group or self.context.label or trial.experiment_dir_name)[-128:]

    def log_trial_save(self, trial: Trial) -> None:
        if trial.checkpoint and trial in self._trial_queues:
            self._trial_queues[trial].put((_QueueItem.CHECKPOINT, trial.checkpoint.path))


class TensorboardTracker(Tracked, TBXLoggerCallback):
    """Tune's TensorBoard files in each trial folder, stepped by env steps instead of the iteration."""

    def __init__(self, context: Context | None = None):
        super().__init__()

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        super().log_trial_result(iteration, trial, {**result, "timesteps_total": result.get(STEP) or None})
