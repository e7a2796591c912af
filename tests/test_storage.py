"""Checkpoints and results in object storage: `storage=s3://...`, `+resume=s3://...`, inspect and the sweep report
over a real S3 API on loopback (moto's server, started here); a source in storage is never written, and the
credentials are in no file a run writes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import rlgraft
from rlgraft import storage
from rlgraft.errors import RlgraftError
from tests.conftest import BUCKET, ROOT, TINY
from tests.storage_servers import S3Server, free_port

QUIET = {"printer": lambda *_: None}


def cli(server: S3Server, module: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **server.env}
    return subprocess.run([sys.executable, "-m", f"experiments.{module}", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def key_of(uri: str) -> str:
    return uri.removeprefix(f"s3://{BUCKET}/")


# --------------------------------------------------------------------------- bad input, before Ray
@pytest.fixture
def s3_env(s3, monkeypatch):
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    storage.forget()
    yield s3
    storage.forget()


@pytest.mark.parametrize("overrides, words", [
    (["storage=s3://no-such-bucket-rlgraft/runs"], ["bucket `no-such-bucket-rlgraft`", "does not exist",
                                                    "AWS_ENDPOINT_URL"]),
    (["storage=nosuchscheme://bucket/runs"], ["no filesystem for `nosuchscheme://`", "pip install"]),
    ([f"+resume=s3://{BUCKET}/nothing/here"], ["nothing is stored under `s3://rlgraft/nothing/here`"]),
    ([f"+resume=s3://{BUCKET}/notes"], ["is not a checkpoint and holds none"]),  # objects, but no checkpoint
    (["+resume=s3://no-such-bucket-rlgraft/x"], ["does not exist"]),
])
def test_bad_storage_input_is_one_paragraph_before_ray(s3_env, overrides, words, tmp_path):
    import ray

    started = ray.is_initialized()
    with pytest.raises(RlgraftError) as err:
        rlgraft.run(rlgraft.compose([*TINY, *overrides]), output_dir=str(tmp_path / "out"), **QUIET)
    for word in words:
        assert word in str(err.value), str(err.value)
    assert "Fix:" in str(err.value) and ray.is_initialized() == started and not (tmp_path / "out" / "tune").exists()


def test_an_endpoint_that_does_not_answer_fails_in_seconds(s3, tmp_path):
    """A port that accepts and never answers (a hung endpoint), and one nothing listens on: each the CLI in a
    fresh process, as a user meets it."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(silent.accept()[0]) for _ in range(8)], daemon=True).start()
    for port, words in ((silent.getsockname()[1], "does not answer within"), (free_port(), "cannot reach")):
        server = S3Server(port=port, secret=s3.secret)
        start = time.monotonic()
        res = cli(server, "run", *TINY, f"storage=s3://{BUCKET}/runs", f"hydra.run.dir={tmp_path}/{port}",
                  timeout=300)
        assert res.returncode == 2, res.stderr[-2000:]
        assert f"127.0.0.1:{port}" in res.stderr and words in res.stderr and "Fix:" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and not (tmp_path / str(port) / "tune").exists()
        assert time.monotonic() - start < 120  # a bound on a hang (SDK retries run for minutes), not a speed goal
    silent.close()


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_run_resume_graft_inspect_and_sweep_in_object_storage(s3, tmp_path):
    store = f"storage=s3://{BUCKET}/runs"
    res = cli(s3, "run", *TINY, store, "checkpointing.frequency=1", "stop.num_env_steps_sampled_lifetime=512",
              "logger=mlflow", f"hydra.run.dir={tmp_path}/run")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "rlgraft: MLflow run" in res.stdout  # the tracker found its run through the trial folder in S3
    run = summary_of(tmp_path / "run")
    tracked = [k for k in s3.objects(BUCKET, key_of(run["trials"][0]["path"])) if k.endswith("rlgraft-tracking.json")]
    assert tracked and not list(Path(ROOT).glob(f"{BUCKET}/**"))  # in the bucket, not in a stray local folder
    source = run["checkpoint"]
    assert source.startswith(f"s3://{BUCKET}/runs/") and run["experiment_path"].startswith("s3://")
    assert not (tmp_path / "run" / "tune").exists()  # Tune's storage is the bucket, not the output dir
    assert store in run["resume_command"] and f'+resume="{source}"' in run["resume_command"]
    before = s3.objects(BUCKET, key_of(source))
    assert any(k.endswith("rllib_checkpoint.json") for k in before)

    res = cli(s3, "run", *TINY, store, f'+resume="{source}"', "stop.num_env_steps_sampled_lifetime=768",
              f"hydra.run.dir={tmp_path}/full")
    assert res.returncode == 0, res.stderr[-3000:]
    full = summary_of(tmp_path / "full")
    assert full["restore"]["full"] and full["restore"]["reports"][0]["verified"] and full["env_steps"] == 768
    assert full["restore"]["checkpoint"] == source

    job = source.split("/pendulum-")[0]  # the run's storage prefix: pick the latest checkpoint below it
    res = cli(s3, "run", "experiment=multi_pendulum", *TINY, store, f"+resume={job}",
              "restore.modules={p1:default_policy}", f"hydra.run.dir={tmp_path}/graft")
    assert res.returncode == 0, res.stderr[-3000:]
    graft = summary_of(tmp_path / "graft")
    assert graft["restore"]["checkpoint"] == source and graft["restore"]["reports"][0]["modules"][0][
        "learner_matches_source"]

    res = cli(s3, "inspect", source)
    assert res.returncode == 0 and "learner_group/learner/rl_module/default_policy" in res.stdout, res.stderr
    res = cli(s3, "run", *TINY, store, f"+resume={source}", "restore.dry_run=true", f"hydra.run.dir={tmp_path}/dry")
    assert res.returncode == 0 and "rlgraft: dry run: every check passed" in res.stdout, res.stderr[-2000:]
    res = cli(s3, "evaluate", f"+checkpoint={source}", "episodes=2", f"hydra.run.dir={tmp_path}/eval")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "eval" / "evaluation.json").read_text())["episodes"] == 2
    res = cli(s3, "export", f"+checkpoint={source}", f"hydra.run.dir={tmp_path}/export")
    assert res.returncode == 0 and "default_policy:" in res.stdout, res.stderr[-2000:]

    res = cli(s3, "run", "-m", *TINY, store, "seed=0,1", f"hydra.sweep.dir={tmp_path}/sweep")
    assert res.returncode == 0, res.stderr[-3000:]
    table = (tmp_path / "sweep" / "sweep.md").read_text()
    assert table.count(" ok ") >= 2 and (tmp_path / "sweep" / "returns_per_job.png").is_file()  # curves from S3
    for job_dir in ("0", "1"):
        assert summary_of(tmp_path / "sweep" / job_dir)["checkpoint"].startswith(f"s3://{BUCKET}/runs/")

    assert s3.objects(BUCKET, key_of(source)) == before  # the source checkpoint in storage was never written
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    leaks = [str(p) for p in written if s3.secret.encode() in p.read_bytes()]
    client = s3.client()
    leaks += [k for k in s3.objects(BUCKET) if s3.secret.encode() in client.get_object(Bucket=BUCKET, Key=k)[
        "Body"].read()]
    assert written and not leaks  # the secret is in no file, local or in the bucket


@pytest.mark.slow
def test_kill_9_and_a_cut_tune_state_in_storage_go_on_from_the_last_checkpoint(s3, tmp_path):
    args = [sys.executable, "-m", "experiments.run", *TINY, f"storage=s3://{BUCKET}/crash", "checkpointing.frequency=1",
            "stop.num_env_steps_sampled_lifetime=6400", f"hydra.run.dir={tmp_path}/run"]
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **s3.env}

    def checkpoints() -> list[str]:
        return sorted({re.sub(r"/checkpoint_\d+/.*", "", k) + "/" + re.search(r"checkpoint_\d+", k).group(0)
                       for k in s3.objects(BUCKET, "crash/") if "/checkpoint_" in k})

    proc = subprocess.Popen(args, cwd=ROOT, stdout=(tmp_path / "first.log").open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)
    deadline = time.monotonic() + 300
    while len(checkpoints()) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(1)
    time.sleep(3)  # past one experiment-state snapshot
    os.killpg(proc.pid, 9)
    proc.wait()
    assert not (tmp_path / "run" / "summary.json").exists()
    saved = checkpoints()
    tuner = next(k for k in s3.objects(BUCKET, "crash/") if k.endswith("/tuner.pkl"))
    s3.client().put_object(Bucket=BUCKET, Key=tuner, Body=b"")  # the half-written state of ray 58179
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "tuner.pkl` is broken" in res.stdout and "going on from" in res.stdout
    first_iter = int(re.search(r"iter\s+(\d+)", res.stdout).group(1))
    assert first_iter > len(saved) - 1  # went on from the last saved checkpoint, not from iteration 1
    s = summary_of(tmp_path / "run")
    assert s["status"] == "ok" and s["env_steps"] == 6400 and s["experiment_path"].endswith("-continued-1")
