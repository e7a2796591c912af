"""Past one machine: a Ray cluster of real raylets on loopback (`ray start`), whose head has no CPUs, so every
trial runs on another node and its checkpoints can reach the driver only through object storage (moto's S3
server); a graft from storage into a run on that node; and a node lost mid-run, survived from storage."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import BUCKET, ROOT, TINY
from tests.storage_servers import RayNode, group_alive

pytestmark = pytest.mark.slow


def cluster_cpus(address: str, env: dict[str, str]) -> float:
    probe = ("import ray; ray.init(address=%r, logging_level='ERROR'); "
             "print('CPUS', ray.cluster_resources().get('CPU', 0))")
    res = subprocess.run([sys.executable, "-c", probe % address], capture_output=True, text=True, timeout=120,
                         env=env)
    found = re.search(r"CPUS ([\d.]+)", res.stdout)
    return float(found.group(1)) if found else 0.0


def wait_cpus(address: str, env: dict[str, str], cpus: float, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while cluster_cpus(address, env) < cpus:
        assert time.monotonic() < deadline, f"the cluster never had {cpus} CPUs"
        time.sleep(1)


ADDRESS_FILE = Path("/tmp/ray/ray_current_cluster")  # `ray start` leaves its address here; put back after


@pytest.fixture(scope="module")
def cluster(s3, tmp_path_factory):
    saved = ADDRESS_FILE.read_bytes() if ADDRESS_FILE.exists() else None
    logs = tmp_path_factory.mktemp("cluster")
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **s3.env, "RAY_USAGE_STATS_ENABLED": "0"}
    # Token auth with a token of this cluster's own: Ray 2.60's head turns it on only where ~/.ray/auth_token
    # exists, so the same test would otherwise run with or without it by what the machine holds (measured:
    # on a fresh machine the head ran without it and the joining node, told to use it, found no token).
    token = logs / "auth_token"
    token.write_text(secrets.token_hex(32))
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    head = RayNode.head(logs / "head.log", env, num_cpus=0)  # the driver's node: no trial can run here
    address = f"127.0.0.1:{head.port}"
    nodes = [RayNode.worker(address, logs / "node2.log", env, num_cpus=2)]
    wait_cpus(address, env, 2)
    yield {"address": address, "env": env, "head": head, "nodes": nodes, "logs": logs}
    for node in [*nodes, head]:
        node.stop()
    if saved is None:
        ADDRESS_FILE.unlink(missing_ok=True)
    else:
        ADDRESS_FILE.write_bytes(saved)


def cli(cluster: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    flags = [a for a in args if a == "-m"]  # Hydra's flags go before the overrides
    return subprocess.run([sys.executable, "-m", "experiments.run", *flags, "ray=cluster",
                           f"ray.address={cluster['address']}", *[a for a in args if a != "-m"]], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=cluster["env"])


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_trials_on_another_node_checkpoint_to_storage_and_graft_from_it(cluster, s3, tmp_path):
    store = f"storage=s3://{BUCKET}/cluster"
    res = cli(cluster, *TINY, store, "stop.num_env_steps_sampled_lifetime=512", "logger=mlflow",
              f"hydra.run.dir={tmp_path}/run")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"Ray runtime connected (ray.address='{cluster['address']}')" in res.stdout
    assert "rlgraft: MLflow run" in res.stdout  # tracked through the trial folder in storage
    run = summary_of(tmp_path / "run")
    assert run["status"] == "ok" and run["checkpoint"].startswith(f"s3://{BUCKET}/cluster/")
    assert all(t["path"].startswith("s3://") for t in run["trials"]) and not (tmp_path / "run" / "tune").exists()

    res = cli(cluster, "experiment=multi_pendulum", *TINY, store, f"+resume={run['checkpoint']}",
              "restore.modules={p1:default_policy}", f"hydra.run.dir={tmp_path}/graft")
    assert res.returncode == 0, res.stderr[-3000:]
    report = summary_of(tmp_path / "graft")["restore"]["reports"][0]  # written by the trial, into storage
    assert report["verified"] and report["modules"][0]["learner_matches_source"]

    res = cli(cluster, "-m", *TINY, store, "seed=0,1", f"hydra.sweep.dir={tmp_path}/sweep")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "sweep" / "sweep.md").read_text().count(" ok ") >= 2
    assert (tmp_path / "sweep" / "returns_per_job.png").is_file()  # curves read from the trials in storage


def test_a_killed_driver_is_started_again_and_goes_on_from_storage(cluster, s3, tmp_path):
    """kill -9 of the driver's process group while its trial trains on node 2: the trial dies with its
    driver, the same command again resumes the Tune experiment from storage."""
    args = [sys.executable, "-m", "experiments.run", "ray=cluster", f"ray.address={cluster['address']}", *TINY,
            f"storage=s3://{BUCKET}/killed", "checkpointing.frequency=1", "stop.num_env_steps_sampled_lifetime=6400",
            f"hydra.run.dir={tmp_path}/run"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=(tmp_path / "first.log").open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env=cluster["env"])
    deadline = time.monotonic() + 300
    while len({k.split("/checkpoint_")[1][:6] for k in s3.objects(BUCKET, "killed/") if "/checkpoint_" in k}) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(1)
    time.sleep(3)  # past one experiment-state snapshot
    os.killpg(proc.pid, 9)
    proc.wait()
    assert proc.returncode == -9 and not (tmp_path / "run" / "summary.json").exists()
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=cluster["env"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming the Tune experiment already in s3://" in res.stdout
    assert int(re.search(r"iter\s+(\d+)", res.stdout).group(1)) > 3  # from its checkpoints, not from the start
    assert summary_of(tmp_path / "run")["env_steps"] == 6400


def test_a_lost_node_is_survived_from_storage(cluster, s3, tmp_path):
    """A frozen graft trains on node 2 with tune.max_failures=1; node 3 joins, node 2's raylet and everything it
    ran are killed: Tune restarts the trial on node 3 from its last checkpoint in storage, the frozen module is
    proven again after the restart, and at most one checkpoint interval is lost."""
    store = f"storage=s3://{BUCKET}/lost"
    res = cli(cluster, *TINY, store, "stop.num_env_steps_sampled_lifetime=256", f"hydra.run.dir={tmp_path}/source")
    assert res.returncode == 0, res.stderr[-3000:]
    source = summary_of(tmp_path / "source")["checkpoint"]
    args = [sys.executable, "-m", "experiments.run", "ray=cluster", f"ray.address={cluster['address']}",
            "experiment=multi_pendulum", *TINY, store, f"+resume={source}", "restore.modules={p1:default_policy}",
            "restore.freeze=[p1]", "tune.max_failures=1", "checkpointing.frequency=1",
            "stop.num_env_steps_sampled_lifetime=25600", f"hydra.run.dir={tmp_path}/run"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=(tmp_path / "run.log").open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env=cluster["env"])

    def saved() -> list[str]:
        return sorted({re.search(r"checkpoint_\d+", k).group(0) for k in s3.objects(BUCKET, "lost/")
                       if "/run/" in k and "/checkpoint_" in k})

    deadline = time.monotonic() + 300
    while len(saved()) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
        time.sleep(1)
    cluster["nodes"].append(RayNode.worker(cluster["address"], cluster["logs"] / "node3.log", cluster["env"]))
    wait_cpus(cluster["address"], cluster["env"], 4)
    lost = cluster["nodes"].pop(0)
    lost.stop()  # SIGKILL to node 2's whole process group: its raylet, workers and the trial on it
    assert not group_alive(lost.proc.pid)
    proc.wait(timeout=600)
    log = (tmp_path / "run.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    s = summary_of(tmp_path / "run")
    assert s["status"] == "ok" and s["env_steps"] == 25600
    before, failed, after = log.partition("Trial task failed")
    assert failed, "the trial never failed: the kill did not land mid-run"
    at_kill = max(int(i) for i in re.findall(r"iter\s+(\d+)", before))
    restart = int(re.search(r"iter\s+(\d+)", after).group(1))  # the first iteration after the restart
    assert restart > 1 and at_kill - (restart - 1) <= 1, (at_kill, restart)  # lost at most one save interval
    last = s["trials"][0]["metrics"]  # the last result, after the restart: the frozen proof ran there too
    assert last["rlgraft/frozen"] == "p1" and "env_runner" in last["rlgraft/frozen_verified_on"]
    (tmp_path.parent / "lost_node.json").write_text(json.dumps({"iteration_at_kill": at_kill, "restart": restart}))
    print(f"lost node: last iteration reported before the kill {at_kill}, first after the restart {restart}")


def test_a_lost_node_without_retries_is_a_clear_error_and_the_same_command_goes_on(cluster, s3, tmp_path):
    """tune.max_failures=0: the trial on the lost node fails the run with a paragraph naming the trial; the same
    command again resumes the Tune experiment from storage (on the node that is left) and finishes."""
    args = [sys.executable, "-m", "experiments.run", "ray=cluster", f"ray.address={cluster['address']}", *TINY,
            f"storage=s3://{BUCKET}/noretry", "tune.max_failures=0", "checkpointing.frequency=1",
            "stop.num_env_steps_sampled_lifetime=25600", f"hydra.run.dir={tmp_path}/run"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=(tmp_path / "first.log").open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env=cluster["env"])

    def saved() -> int:
        return len({re.search(r"checkpoint_\d+", k).group(0) for k in s3.objects(BUCKET, "noretry/")
                    if "/checkpoint_" in k})

    deadline = time.monotonic() + 300
    while saved() < 3:
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(1)
    cluster["nodes"].append(RayNode.worker(cluster["address"], cluster["logs"] / "node4.log", cluster["env"]))
    wait_cpus(cluster["address"], cluster["env"], 4)
    cluster["nodes"].pop(0).stop()  # the node the trial runs on (the only other one joined just now)
    proc.wait(timeout=600)
    first = (tmp_path / "first.log").read_text()
    assert proc.returncode != 0 and "rlgraft: error: every trial failed" in first and "Fix:" in first, first[-3000:]
    assert "Traceback" not in first.split("rlgraft: error:")[-1]
    at_kill = max(int(i) for i in re.findall(r"iter\s+(\d+)", first))
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=cluster["env"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming the Tune experiment already in s3://" in res.stdout
    restart = int(re.search(r"iter\s+(\d+)", res.stdout).group(1))
    assert restart > 1 and at_kill - (restart - 1) <= 1, (at_kill, restart)
    s = summary_of(tmp_path / "run")
    assert s["status"] == "ok" and s["env_steps"] == 25600
