"""Experiment tracking against a real MLflow server on loopback, W&B offline, and TensorBoard files.

Every run is real tiny PPO through Ray Tune; the server is `mlflow server` with a sqlite store in
tmp_path, read back with MLflow's own client.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import rlgraft
from rlgraft import configs, runtime, schema, tracking
from rlgraft.errors import RlgraftError
from tests.conftest import ROOT, TINY

LOGGERS = sorted(p.stem for p in (configs.CONF_DIR / "logger").glob("*.yaml"))
QUIET = {"printer": lambda *_: None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`mlflow server` on 127.0.0.1 with a sqlite store; `wait()` until it answers, `client()`, `stop()`."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        with (root / "server.log").open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", "1", "--backend-store-uri", f"sqlite:///{root}/db.sqlite",
                 "--default-artifact-root", str(root / "art")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self) -> Server:
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not answer: {(self.root / 'server.log').read_text()[-2000:]}")

    def client(self, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        return MlflowClient(uri or self.uri)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    """Two servers started at once, and while Ray starts (each takes 10-20 s to answer here): one that
    stays up, and one that the mid-run test stops. Tests `wait()` for the one they use."""
    both = [Server(tmp_path_factory.mktemp("mlflow")), Server(tmp_path_factory.mktemp("mlflow_doomed"))]
    yield both
    for s in both:
        s.stop()


@pytest.fixture
def server(servers):
    return servers[0].wait()


def runs_of(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def progress_steps(trial_dir: str) -> list[int]:
    import csv

    with (Path(trial_dir) / "progress.csv").open() as fh:
        return [int(float(r["num_env_steps_sampled_lifetime"])) for r in csv.DictReader(fh)]


# --- config: every option composes, typos fail, refusals point at logger= ------------------------------


@pytest.mark.parametrize("option", LOGGERS)
def test_every_logger_option_composes_and_builds_without_ray(option, tmp_path):
    offline = ["logger.wandb.mode=offline"] if option == "wandb" else []  # online needs an API key (tested below)
    c = configs.prepare(rlgraft.compose([f"logger={option}", *offline]), str(tmp_path))
    chosen = {k for k, v in vars(c.logger).items() if v is not None}
    assert chosen == (set() if option == "default" else {option})
    callbacks = tracking.build(c, None)  # imports and builds the _target_; checks no server (none set)
    assert [type(cb).__name__ for cb in callbacks] == (
        [] if option == "default" else [{"mlflow": "MlflowTracker", "wandb": "WandbTracker",
                                         "tensorboard": "TensorboardTracker"}[option]])


@pytest.mark.parametrize("name", sorted(schema.TRACKERS))
def test_tracker_dataclass_defaults_equal_the_yaml(name):
    from omegaconf import OmegaConf

    composed = OmegaConf.to_container(rlgraft.compose([f"logger={name}"]).logger[name])
    assert composed == OmegaConf.to_container(OmegaConf.structured(schema.TRACKERS[name]()))


def test_a_list_of_loggers_merges_and_typos_fail_at_compose_time():
    from hydra.errors import ConfigCompositionException

    c = rlgraft.compose(["logger=[mlflow,tensorboard]", "logger.mlflow.tracking_uri=http://h:1"])
    assert c.logger.mlflow.tracking_uri == "http://h:1" and c.logger.tensorboard is not None
    assert c.logger.wandb is None
    for bad in (["logger=mlflow", "logger.mlflow.trackng_uri=x"], ["logger=wandb", "logger.wandb.mode=onlin"]):
        with pytest.raises(ConfigCompositionException):
            rlgraft.compose(bad)


def test_a_searched_trial_gets_its_own_values_as_params(tmp_path):
    c = configs.prepare(rlgraft.compose(["experiment=pendulum_grid"]), str(tmp_path))
    ctx = tracking.context(c, None)
    assert json.loads(ctx.params["tune.search.training.lr.grid"]) == [0.001, 0.0003]
    trial = ctx.trial_params({"lr": 0.0003, "minibatch_size": 256, "train_batch_size_per_learner": 2000})
    assert (trial["algo.training.lr"], trial["algo.training.minibatch_size"]) == ("0.0003", "256")
    assert ctx.tags["rlgraft.preset"] == "pendulum_grid" and ctx.label == "pendulum_grid"


def test_removed_rllib_logger_options_point_at_logger():
    from rlgraft import algo

    for key in ("logger_config", "logger_creator"):
        c = configs.prepare(rlgraft.compose([f"+algo.debugging.{key}={{type: x}}"]), "/tmp/unused")
        with pytest.raises(RlgraftError, match="logger=mlflow"):
            algo.build(c)


# --- errors before Ray starts --------------------------------------------------------------------------


def no_ray(monkeypatch):
    """Make starting Ray fail loudly, to prove an error came before it."""

    def refuse(*a, **k):
        raise AssertionError("Ray was started before the tracking error")

    monkeypatch.setattr(runtime, "connect", refuse)


def test_missing_package_is_one_paragraph_naming_the_extra_before_ray(tiny_cfg, tmp_path, monkeypatch):
    no_ray(monkeypatch)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    cfg = tiny_cfg("single", {"logger": rlgraft.compose(["logger=mlflow"]).logger})
    with pytest.raises(RlgraftError) as err:
        rlgraft.run(cfg, output_dir=str(tmp_path), **QUIET)
    text = err.value.paragraph()
    assert "logger=mlflow needs the `mlflow` package" in text and "pip install 'rlgraft[mlflow]'" in text
    assert "\n" not in text


def test_unreachable_server_is_an_error_before_ray(tiny_cfg, tmp_path, monkeypatch):
    no_ray(monkeypatch)
    uri = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    cfg = tiny_cfg("single", {"logger": rlgraft.compose(["logger=mlflow", f"logger.mlflow.tracking_uri={uri}"]).logger})
    with pytest.raises(RlgraftError, match=f"MLflow tracking server at {uri} does not answer") as err:
        rlgraft.run(cfg, output_dir=str(tmp_path), **QUIET)
    assert "logger.mlflow.tracking_uri" in err.value.paragraph()


def test_online_wandb_without_an_api_key_is_an_error_before_ray(tiny_cfg, tmp_path, monkeypatch):
    no_ray(monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = tiny_cfg("single", {"logger": rlgraft.compose(["logger=wandb"]).logger})
    with pytest.raises(RlgraftError, match="needs a W&B API key") as err:
        rlgraft.run(cfg, output_dir=str(tmp_path / "out"), **QUIET)
    assert "logger.wandb.mode=offline" in err.value.paragraph()


def test_environment_variables_are_honoured_when_the_config_is_silent(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/env.db")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    c = configs.prepare(rlgraft.compose(["logger=mlflow"]), str(tmp_path / "out"))
    [cb] = tracking.build(c, None)
    assert (cb.tracking_uri, cb.experiment_name) == (f"sqlite:///{tmp_path}/env.db", "from-env")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    [cb] = tracking.build(c, None)  # neither: a local store in the output dir, the preset as experiment
    assert cb.tracking_uri == f"sqlite:///{tmp_path}/out/mlruns/mlflow.db" and cb.experiment_name == c.name


# --- against a real server -----------------------------------------------------------------------------


def mlflow_cfg(tiny_cfg, uri: str, experiment: str, **more):
    logger = rlgraft.compose(["logger=[mlflow,tensorboard]", f"logger.mlflow.tracking_uri={uri}",
                              f"logger.mlflow.experiment_name={experiment}"]).logger
    return tiny_cfg("single", {"logger": logger, **more})


@pytest.mark.slow  # end to end, in CI's whole run (.ci/run); keeps the default run under 15 min
def test_tiny_run_then_graft_read_back_from_the_server(servers, ray_runtime, server, tiny_cfg, tmp_path):
    cfg = mlflow_cfg(tiny_cfg, server.uri, "tiny", **{"stop.num_env_steps_sampled_lifetime": 512})
    lines: list[str] = []
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    s = rlgraft.run(cfg, output_dir=str(tmp_path / "a"), printer=lines.append)
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_before  # the next run in this process is not steered
    client = server.client()
    [run] = runs_of(client, "tiny")
    trial = s["trials"][0]
    assert run.info.status == "FINISHED"
    assert any(f"{server.uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" in line for line in lines)
    # params: the composed rlgraft config as typed on the command line, not Tune's dict
    p = run.data.params
    assert p["algo.training.train_batch_size_per_learner"] == "256" and p["seed"] == "0"
    assert p["stop.num_env_steps_sampled_lifetime"] == "512" and p["logger.mlflow.tracking_uri"] == server.uri
    assert "train_batch_size_per_learner" not in p and "_model_config" not in p
    # every metric stepped by env steps, one point per iteration, the same as Tune's progress.csv
    history = client.get_metric_history(run.info.run_id, "env_runners/episode_return_mean")
    assert [m.step for m in history] == progress_steps(trial["path"]) == [256, 512]
    assert history[-1].value == pytest.approx(s["metrics"]["env_runners/episode_return_mean"])
    tags = run.data.tags
    assert tags["rlgraft.preset"] == "pendulum" and tags["rlgraft.checkpoint"] == s["checkpoint"]
    assert "rlgraft.restore.checkpoint" not in tags and "rlgraft.sweep_dir" not in tags
    artifacts = [f.path for f in client.list_artifacts(run.info.run_id)]
    assert "summary.json" in artifacts
    # TensorBoard: Tune's event files in the trial folder, stepped by env steps too
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [events] = Path(trial["path"]).glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert [e.step for e in acc.Scalars("ray/tune/env_runners/episode_return_mean")] == [256, 512]

    # a graft from that run: a new tracked run that names its source, the mapping and the digests
    graft = mlflow_cfg(tiny_cfg, server.uri, "tiny", resume=s["checkpoint"],
                       **{"restore.modules": {"default_policy": "default_policy"}})
    g = rlgraft.run(graft, output_dir=str(tmp_path / "b"), **QUIET)
    runs = runs_of(client, "tiny")
    assert len(runs) == 2
    new = runs[1].data.tags
    assert new["rlgraft.restore.checkpoint"] == s["checkpoint"] and new["rlgraft.restore.mode"] == "modules"
    assert json.loads(new["rlgraft.restore.modules"]) == {"default_policy": "default_policy"}
    assert json.loads(new["rlgraft.restore.digests"]) == {
        m["target"]: m["digest"] for m in g["restore"]["modules"]}
    assert new["rlgraft.restore.source_mlflow_run_id"] == run.info.run_id
    assert runs[1].info.run_id != run.info.run_id


@pytest.mark.slow  # end to end, in CI's whole run (.ci/run); keeps the default run under 15 min
def test_server_stopped_mid_run_training_finishes_and_says_what_was_lost(servers, ray_runtime, tiny_cfg, tmp_path):
    srv = servers[1].wait()
    try:
        lines: list[str] = []
        pid = srv.proc.pid  # the printer holds plain values only: Tune pickles the progress callback

        def printer(line: str) -> None:  # stops the server when the first result arrives (before the tracker)
            lines.append(line)
            if " iter    1 " in line:
                os.killpg(pid, signal.SIGTERM)
                os.waitpid(pid, 0)

        cfg = mlflow_cfg(tiny_cfg, srv.uri, "lost", **{"stop.num_env_steps_sampled_lifetime": 768})
        s = rlgraft.run(cfg, output_dir=str(tmp_path / "out"), printer=printer)
    finally:
        srv.stop()
    assert s["status"] == "ok" and s["iterations"] == 3  # training went on
    trial = s["trials"][0]
    assert progress_steps(trial["path"]) == [256, 512, 768]  # the local files are complete
    [warning] = [line for line in lines if "MLflow did not get" in line]
    assert "results of 3 iteration(s) (1-3)" in warning and "the end of the run" in warning
    assert "summary.json" in warning and trial["path"] in warning
    # what the server's store holds: the run and its params, no metric, still RUNNING (its end was lost)
    store = srv.client(f"sqlite:///{srv.root}/db.sqlite")
    [run] = runs_of(store, "lost")
    assert run.info.status == "RUNNING" and run.data.params["seed"] == "0" and not run.data.metrics


# --- sweeps and crash + resume (subprocesses, as users run them) ----------------------------------------

TINY_NO_STOP = [o for o in TINY if not o.startswith("stop.")]


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_two_job_sweep_is_one_experiment_with_one_run_per_job(server, tmp_path):
    sweep = tmp_path / "sweep"
    res = cli("-m", *TINY_NO_STOP, "stop.num_env_steps_sampled_lifetime=512", "seed=0,1", "logger=mlflow",
              f"logger.mlflow.tracking_uri={server.uri}", f"hydra.sweep.dir={sweep}")
    assert res.returncode == 0, res.stderr[-3000:]
    client = server.client()
    runs = runs_of(client, f"pendulum sweep {sweep}")
    assert sorted(r.data.tags["rlgraft.job"] for r in runs) == ["0", "1"]
    assert {r.data.tags["rlgraft.sweep_dir"] for r in runs} == {str(sweep)}
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    for r in runs:
        job = json.loads((sweep / r.data.tags["rlgraft.job"] / "summary.json").read_text())
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "env_runners/episode_return_mean")]
        assert steps == progress_steps(job["trials"][0]["path"]) == [256, 512]
        assert r.data.tags["rlgraft.checkpoint"] == job["checkpoint"]
        files = {f.path for f in client.list_artifacts(r.info.run_id, "sweep")}
        assert files == {"sweep/returns_per_job.png", "sweep/returns_by_config.png"}
        assert "summary.json" in {f.path for f in client.list_artifacts(r.info.run_id)}


@pytest.mark.slow
def test_concurrent_sweep_jobs_share_one_local_store(tmp_path):
    # hydra/launcher=rlgraft runs both jobs at once; both create the sweep's sqlite store (lost one job's
    # tracking to "table ... already exists" before the store was created under a lock)
    sweep = tmp_path / "sweep"
    res = cli("-m", "hydra/launcher=rlgraft", *TINY_NO_STOP, "stop.num_env_steps_sampled_lifetime=512", "seed=0,1",
              "logger=mlflow", f"hydra.sweep.dir={sweep}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "MLflow did not get" not in res.stdout + res.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{sweep}/mlruns/mlflow.db")
    runs = runs_of(client, f"pendulum sweep {sweep}")
    assert sorted(r.data.tags["rlgraft.job"] for r in runs) == ["0", "1"]
    for r in runs:
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "env_runners/episode_return_mean")]
        assert steps == [256, 512] and r.info.status == "FINISHED"


def kill_after_first_checkpoint(args: list[str], run_dir: Path, log: Path, also: str | None = None) -> None:
    """Kill -9 once the first checkpoint is saved (and, with `also`, a file matching that glob under the run
    dir exists: the tracker's own run folder, which W&B creates seconds after the trial starts)."""
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "experiments.run", *args], cwd=ROOT, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 300
        while time.time() < deadline and not (list(run_dir.glob("tune/*/*/checkpoint_*"))
                                              and (also is None or list(run_dir.glob(also)))):
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(3)  # past one experiment-state snapshot (checkpointing.experiment_state_s=2)
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, as a crash or OOM kill would
        proc.wait()
    assert not (run_dir / "summary.json").exists(), "the run finished before it was killed"


@pytest.mark.slow
def test_killed_run_started_again_continues_the_same_mlflow_run(server, tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY_NO_STOP, "stop.num_env_steps_sampled_lifetime=5120", "checkpointing.frequency=1", "logger=mlflow",
            f"logger.mlflow.tracking_uri={server.uri}", "logger.mlflow.experiment_name=killed",
            f"hydra.run.dir={run_dir}"]
    kill_after_first_checkpoint(args, run_dir, tmp_path / "first.log")
    client = server.client()
    [before] = runs_of(client, "killed")
    steps_before = [m.step for m in client.get_metric_history(before.info.run_id, "env_runners/episode_return_mean")]
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming the Tune experiment" in res.stdout
    [after] = runs_of(client, "killed")  # exactly one MLflow run for the killed and resumed trial
    assert after.info.run_id == before.info.run_id and after.info.status == "FINISHED"
    assert after.data.tags["rlgraft.resumes"] == "1"
    history = client.get_metric_history(after.info.run_id, "env_runners/episode_return_mean")
    steps = [m.step for m in history]
    s = json.loads((run_dir / "summary.json").read_text())
    # the history continues: every env-step count of the run up to the stop, the resumed part after
    # the killed part; points between the last checkpoint and the kill were logged twice
    assert sorted(set(steps)) == list(range(256, 5121, 256)) and s["env_steps"] == 5120
    assert steps[:len(steps_before)] == steps_before and steps[-1] == 5120
    record = {"steps_before_kill": steps_before, "steps_after_resume": steps[len(steps_before):],
              "run_id": after.info.run_id, "status": after.info.status, "runs_in_experiment": 1,
              "resumes_tag": after.data.tags["rlgraft.resumes"]}
    (tmp_path.parent / "kill_resume_readback.json").write_text(json.dumps(record))
    print("MLflow read back after kill and resume:", json.dumps(record))


def wandb_history(run_dir: Path) -> list[dict]:
    """History rows of an offline W&B run, read from its `.wandb` file (a LevelDB-style log of
    protobuf records: 7-byte header, 32 KiB blocks, 7-byte record headers)."""
    from wandb.proto import wandb_internal_pb2

    [data_file] = run_dir.glob("run-*.wandb")
    raw = data_file.read_bytes()
    block, pos, rows, parts = 32768, 7, [], b""
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        parts += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item})
        elif kind == 0:
            break
    return rows


@pytest.mark.slow
def test_wandb_offline_holds_the_metrics_and_a_resumed_job_reuses_its_run_id(tmp_path):
    sweep = tmp_path / "sweep"
    # 50 iterations: long enough that the kill, which waits for W&B's own run folder, lands mid-run
    args = ["-m", *TINY_NO_STOP, "stop.num_env_steps_sampled_lifetime=12800", "checkpointing.frequency=1", "seed=0",
            "logger=wandb", "logger.wandb.mode=offline", f"hydra.sweep.dir={sweep}"]
    kill_after_first_checkpoint(args, sweep / "0", tmp_path / "first.log", also="tune/*/*/wandb/offline-run-*")
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((sweep / "0" / "summary.json").read_text())
    trial = Path(s["trials"][0]["path"])
    entry = json.loads((trial / "rlgraft-tracking.json").read_text())["wandb"]
    folders = sorted((trial / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(f.name.endswith(f"-{entry['run_id']}") for f in folders)  # one id, resumed
    assert entry["resumes"] == 1 and entry["group"] == f"pendulum sweep {sweep}"
    assert f"W&B run {entry['run_id']}" in res.stdout
    # The resumed folder continues the history from the restored checkpoint: W&B's step is the
    # iteration, every row carries the env-step count its charts are drawn against. (What the killed
    # process had not flushed to its own folder, W&B lost with it: wandb-core buffers its writes.)
    first_iter = int(re.search(r"iter\s+(\d+)", res.stdout).group(1))
    rows = wandb_history(folders[-1])
    assert [r["_step"] for r in rows] == list(range(first_iter, 51)) and first_iter > 1
    assert [r["num_env_steps_sampled_lifetime"] for r in rows] == [256 * r["_step"] for r in rows]
    assert all("env_runners/episode_return_mean" in r for r in rows)
    assert "config" not in rows[0] and "algo/training/lr" not in rows[0]
    killed = [r["_step"] for r in wandb_history(folders[0])]  # whatever was flushed: iterations from 1
    assert killed == list(range(1, len(killed) + 1))


def test_progress_pickles_while_print_is_swapped(monkeypatch):
    """Tune pickles callbacks into tuner.pkl; Ray's tqdm_ray swaps builtins.print, which then no longer
    pickles by name ("Can't pickle <built-in function print>", seen once in a CLI run)."""
    import builtins
    import pickle

    from rlgraft.tuning import Progress

    progress = Progress("env_runners/episode_return_mean")
    monkeypatch.setattr(builtins, "print", lambda *a, **k: None)
    restored = pickle.loads(pickle.dumps(progress))
    assert restored.metric == "env_runners/episode_return_mean" and callable(restored.printer)
