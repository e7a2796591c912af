"""Experiment tracking for Tune: what trackers receive (params, tags), the checks before Ray, the closing lines.

Tune's own callbacks (Ray 2.60) step by `timesteps_total or training_iteration` (the new API stack never
sets `timesteps_total`), log Tune's internal config dict, start a new tracked run after `Tuner.restore`,
and, for MLflow, send one HTTP request per metric and retry a dead server for minutes. The callbacks in
`rlgraft.trackers` subclass them and change those points; the run id of every trial lives in its trial
folder (`rlgraft-tracking.json`), which is what lets a killed and re-started job continue the same run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from rlgraft import storage
from rlgraft.errors import RlgraftError

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from rlgraft.restore import RestorePlan
    from rlgraft.schema import Config

RUN_FILE = "rlgraft-tracking.json"  # in each trial folder: tracked run ids and what did not reach the tracker
STEP = "num_env_steps_sampled_lifetime"  # every metric's x-axis, so runs with different batch sizes line up
# The import each tracker needs and how to install it.
PACKAGES = {"mlflow": ("mlflow", "pip install 'rlgraft[mlflow]'"), "wandb": ("wandb", "pip install 'rlgraft[wandb]'"),
            "tensorboard": ("tensorboardX", "pip install tensorboardX")}
METRIC_NAME = re.compile(r"[^\w\-./ ]")  # characters MLflow refuses in a metric name


class Tracked:
    """Marker: a tracker that takes rlgraft's `context` (params, tags, store)."""


@dataclass(frozen=True)
class Context:
    """What every tracker of one run receives: plain values (Tune pickles its callbacks into tuner.pkl)."""

    params: dict[str, str]
    tags: dict[str, str]
    label: str  # MLflow experiment / W&B group: the preset, and the sweep dir for a sweep
    output_dir: str
    local_store: str  # the MLflow store when no server is configured: the sweep dir, or the run's output dir
    searched: tuple[tuple[str, str], ...] = ()  # (algo section, option) a Tune search sets per trial

    def trial_params(self, trial_config: dict[str, Any]) -> dict[str, str]:
        """The run's params with a searched trial's own values in place of the search spec."""
        out = dict(self.params)
        for section, key in self.searched:
            values, name = ((trial_config.get("_model_config") or {}, key.removeprefix("model_config."))
                            if key.startswith("model_config.") else (trial_config, key))
            if name in values:
                out[f"algo.{section}.{key}"] = _param(values[name])
        return out


def sweep_of(output_dir: str) -> tuple[str | None, str | None]:
    """(sweep dir, job number) when the output dir is a Hydra multirun job, else (None, None)."""
    out = Path(output_dir)
    if (out.parent / "multirun.yaml").is_file():  # Hydra writes it into the sweep dir before the first job
        return str(out.parent), out.name
    return None, None


def context(c: Config, restore_plan: RestorePlan | None) -> Context:
    """Params and tags for the trackers, chosen on purpose: the composed config flattened as typed on
    the command line, the preset, the sweep and job, and where a restore took its weights from."""
    from rlgraft.search import searched

    config = OmegaConf.to_container(OmegaConf.structured(c), resolve=True, enum_to_str=True)
    assert isinstance(config, dict)
    params = {k: _param(v) for k, v in _flat({str(k): v for k, v in config.items()}).items()}
    sweep_dir, job = sweep_of(str(c.output_dir))
    tags = {"rlgraft.preset": c.name, "rlgraft.env": c.env.id, "rlgraft.algo": c.algo.name,
            "rlgraft.output_dir": str(c.output_dir)}
    if sweep_dir:
        tags |= {"rlgraft.sweep_dir": sweep_dir, "rlgraft.job": str(job)}
    if restore_plan:
        summary = restore_plan.summary()
        mode = "full" if summary["full"] else ("modules" if summary["modules"] else "components")
        tags |= {"rlgraft.restore.checkpoint": str(summary["checkpoint"]), "rlgraft.restore.mode": mode,
                 "rlgraft.restore.chosen": str(summary["chosen"]),
                 "rlgraft.restore.modules": json.dumps({m["target"]: m["source"] for m in summary["modules"]}),
                 "rlgraft.restore.digests": json.dumps({m["target"]: m["digest"] for m in summary["modules"]})}
        if summary["components"]:
            tags["rlgraft.restore.components"] = json.dumps(summary["components"])
        for tracker, entry in source_runs(str(summary["checkpoint"])).items():
            tags[f"rlgraft.restore.source_{tracker}_run_id"] = str(entry.get("run_id"))
    label = f"{c.name} sweep {sweep_dir}" if sweep_dir else c.name
    return Context(params=params, tags=tags, label=label, output_dir=str(c.output_dir),
                   local_store=sweep_dir or str(c.output_dir),
                   searched=tuple((section, key) for section, key, _ in searched(c)))


def trial_dir(trial: Any) -> str:
    """A Tune trial's folder in its storage, by path or URI (Tune's `trial.path` has no scheme for S3)."""
    return storage.uri_of(trial.storage.storage_filesystem, trial.path) if getattr(trial, "storage", None) \
        else str(trial.path)


def local_dir(trial: Any) -> str:
    """A folder on the driver's disk for a tracker's own files (W&B's offline runs): the trial folder, or with
    object storage, Tune's local staging folder of the trial."""
    where = trial_dir(trial)
    return str(trial.local_path) if storage.is_uri(where) else where


def source_runs(checkpoint: str) -> dict[str, dict[str, Any]]:
    """The tracked runs of the trial a checkpoint came from (its folder or the one above it)."""
    ck = storage.at(checkpoint)
    for folder in (ck, *list(ck.parents)[:2]):
        if (folder / RUN_FILE).is_file():
            return read_runs(str(folder))
    return {}


def read_runs(trial_dir: str) -> dict[str, dict[str, Any]]:
    f = storage.at(trial_dir) / RUN_FILE
    if storage.is_uri(trial_dir):
        storage.forget()  # written a moment ago, maybe by another process: list afresh
    return dict(json.loads(f.read_text())) if f.is_file() else {}


def write_run(trial_dir: str, tracker: str, entry: dict[str, Any]) -> None:
    runs = read_runs(trial_dir)
    runs[tracker] = entry
    path = storage.at(trial_dir) / RUN_FILE
    if storage.is_uri(trial_dir):  # an object is written whole or not at all
        path.write_text(json.dumps(runs, indent=2))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(runs, indent=2))
    tmp.replace(path)  # a kill never leaves half a file: the run id is what a resume continues


def build(c: Config, restore_plan: RestorePlan | None) -> list[Any]:
    """The Tune callbacks of `logger.*`, checked before Ray starts: packages installed, servers answering."""
    from hydra.utils import get_class
    from ray import tune

    chosen = {name: node for name, node in vars(c.logger).items() if node is not None}
    for name in chosen:
        _require(name)
    if not chosen:
        return []
    ctx = context(c, restore_plan)
    callbacks = []
    for name, node in chosen.items():
        target = node._target_
        try:
            cls = get_class(target)
        except Exception as exc:
            raise RlgraftError(f"`logger.{name}._target_={target}` does not import", found=str(exc),
                               fix=f"name a Tune callback class, e.g. {type(node)()._target_}") from exc
        extra: dict[str, Any] = {"context": ctx} if issubclass(cls, Tracked) else {}
        if name == "mlflow" and extra:
            extra |= mlflow_target(node, ctx)
        if name == "wandb":
            _check_wandb_login(node)
        options = OmegaConf.to_container(OmegaConf.structured(node), enum_to_str=True)
        assert isinstance(options, dict)
        kwargs: dict[str, Any] = {str(k): v for k, v in options.items() if k != "_target_"} | extra
        try:
            callback = cls(**kwargs)
        except Exception as exc:
            raise RlgraftError(f"`logger.{name}` could not be built", found=f"{type(exc).__name__}: {exc}"[:600],
                               fix=f"correct the options under logger.{name} or its _target_") from exc
        if not isinstance(callback, tune.Callback):
            raise RlgraftError(f"`logger.{name}._target_={target}` is not a Tune callback",
                               found=f"{type(callback).__name__}",
                               fix="name a subclass of ray.tune.Callback (e.g. a LoggerCallback)")
        callbacks.append(callback)
    return callbacks


def _require(name: str) -> None:
    module, install = PACKAGES[name]
    try:
        __import__(module)
    except ImportError as exc:
        raise RlgraftError(
            f"logger={name} needs the `{module}` package, which does not import here",
            found=f"ImportError: {exc}",
            fix=f"{install} (the `{name}` extra), or leave out logger={name}") from exc


def _check_wandb_login(node: Any) -> None:
    """An online W&B run without an API key fails in Tune's setup, after Ray started; say it now."""
    if str(getattr(node.mode, "value", node.mode)) != "online":
        return
    import wandb

    if not wandb.login(prompt=False, verify=False):  # reads WANDB_API_KEY or ~/.netrc; no network
        raise RlgraftError("logger=wandb in online mode needs a W&B API key, and none is set here",
                           found="no WANDB_API_KEY in the environment and no `wandb login` in ~/.netrc",
                           fix="run `wandb login` (or set WANDB_API_KEY), or use logger.wandb.mode=offline")


def mlflow_target(node: Any, ctx: Context) -> dict[str, Any]:
    """Tracking URI and experiment: the config, else MLflow's environment variables, else a local store;
    a server that does not answer is an error now, not a stall during training."""
    uri = node.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    artifacts = None
    if not uri:
        store = Path(ctx.local_store) / "mlruns"
        store.mkdir(parents=True, exist_ok=True)
        uri, artifacts = f"sqlite:///{store}/mlflow.db", str(store / "artifacts")
    name = node.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or ctx.label
    if uri.startswith(("http://", "https://")):
        from mlflow.tracking import MlflowClient

        with _http_settings(node.request_timeout, 0):
            try:
                client = MlflowClient(uri)
                client.search_experiments(max_results=1)
            except Exception as exc:
                raise RlgraftError(
                    f"the MLflow tracking server at {uri} does not answer",
                    found=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
                    fix="start it (mlflow server --host 127.0.0.1 --port 5000), correct "
                        "logger.mlflow.tracking_uri (or $MLFLOW_TRACKING_URI), or leave both unset for a "
                        "local store in the output dir") from exc
            try:
                if not os.environ.get("MLFLOW_EXPERIMENT_ID"):
                    _ensure_experiment(client, name, None)
            except Exception as exc:
                refused = RlgraftError(f"the MLflow server at {uri} did not create the experiment {name!r}",
                                       found=first_line(exc),
                                       fix="set logger.mlflow.experiment_name to one you may write to")
                raise refused from exc
    elif not os.environ.get("MLFLOW_EXPERIMENT_ID"):
        _create_local_store(uri, name, artifacts)
    return {"tracking_uri": uri, "experiment_name": name, "artifact_location": artifacts}


def _create_local_store(uri: str, name: str, artifacts: str | None) -> None:
    """Create a local store's tables and the experiment under a file lock: concurrent sweep jobs
    (`hydra/launcher=rlgraft`) racing to create one sqlite store lost a job's tracking ("table ... already
    exists", measured)."""
    import fcntl

    from mlflow.tracking import MlflowClient

    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    if path is None:
        return
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _ensure_experiment(MlflowClient(uri), name, artifacts)  # the client creates the tables


def _ensure_experiment(client: Any, name: str, artifacts: str | None) -> None:
    """The experiment, created once: the jobs of a concurrent sweep all ask for it at the same time."""
    if client.get_experiment_by_name(name) is None:
        try:
            client.create_experiment(name, artifact_location=artifacts)
        except Exception:
            if client.get_experiment_by_name(name) is None:  # not another job's creation: a real error
                raise


@contextlib.contextmanager
def _http_settings(timeout: float, retries: int) -> Iterator[None]:
    keys = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(math.ceil(timeout))),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries)}
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def finish(summary: dict[str, Any]) -> list[str]:
    """After the run: summary.json to every MLflow run, the final checkpoint, and lines saying where each
    trial is tracked and what a tracker did not receive."""
    lines: list[str] = []
    summary_file = Path(str(summary.get("output_dir"))) / "summary.json"
    for trial in summary.get("trials", []):
        runs = read_runs(trial["path"])
        if entry := runs.get("mlflow"):
            lost = entry.get("lost") or {}
            if entry.get("run_id") and not lost.get("error"):
                lost = _finish_mlflow(entry, trial, summary_file)
            if entry.get("run_id"):
                uri = str(entry.get("tracking_uri"))
                where = (f"{uri.rstrip('/')}/#/experiments/{entry.get('experiment_id')}/runs/{entry['run_id']}"
                         if uri.startswith("http") else f"{uri}, mlflow ui --backend-store-uri {uri}")
                lines.append(f"rlgraft: MLflow run {entry['run_id']} (experiment {entry.get('experiment_name')!r}) "
                             f"for trial {trial['trial_id']}: {where}")
            if lost.get("error"):
                its = lost.get("iterations") or []
                got = (f"results of {len(its)} iteration(s) ({_ranges(its)}), " if its else "")
                lines.append(f"rlgraft: warning: MLflow did not get {got}{', '.join(lost.get('other') or [])}"
                             f"{', ' if lost.get('other') else ''}summary.json for trial {trial['trial_id']}: "
                             f"{lost['error']}. The local files are complete: {trial['path']} (progress.csv, "
                             "result.json, events) and summary.json")
        if entry := runs.get("wandb"):
            where = (f"offline in {entry['dir']}/wandb (upload: wandb sync {entry['dir']}/wandb/offline-run-*)"
                     if entry.get("mode") == "offline" else f"project {entry.get('project')!r}")
            lines.append(f"rlgraft: W&B run {entry['run_id']} (group {entry.get('group')!r}), {where}")
    return lines


def _finish_mlflow(entry: dict[str, Any], trial: dict[str, Any], summary_file: Path) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    lost = entry.get("lost") or {}
    try:
        client = MlflowClient(entry["tracking_uri"])
        if trial.get("checkpoint"):
            client.set_tag(entry["run_id"], "rlgraft.checkpoint", trial["checkpoint"])
        if summary_file.is_file():
            client.log_artifact(entry["run_id"], str(summary_file))
    except Exception as exc:
        lost = {**lost, "error": first_line(exc), "other": [*lost.get("other", []), "the checkpoint path"]}
        write_run(trial["path"], "mlflow", {**entry, "lost": lost})
    return lost


def log_sweep_plots(sweep_dir: str, plots: list[str]) -> list[str]:
    """The sweep report's PNGs as artifacts (`sweep/`) of every MLflow run of the sweep's jobs."""
    from mlflow.tracking import MlflowClient

    missed = []
    for summary_file in sorted(Path(sweep_dir).glob("*/summary.json")):
        for trial in json.loads(summary_file.read_text()).get("trials", []):
            entry = read_runs(trial.get("path") or "").get("mlflow")
            if not entry or not entry.get("run_id"):
                continue
            try:
                client = MlflowClient(entry["tracking_uri"])
                for png in plots:
                    client.log_artifact(entry["run_id"], png, "sweep")
            except Exception as exc:
                missed.append(f"{entry['run_id']}: {first_line(exc)}")
    return missed


def run_name(ctx: Context, trial: Trial) -> str:
    job = ctx.tags.get("rlgraft.job")
    return f"{ctx.tags.get('rlgraft.preset', 'rlgraft')}{f'-job{job}' if job else ''}-{trial.trial_id}"


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out |= _flat(v, f"{key}.")
        else:
            out[key] = v
    return out


def _param(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def _ranges(its: list[int]) -> str:
    its = sorted(set(its))
    return f"{its[0]}-{its[-1]}" if len(its) > 1 else str(its[0])
