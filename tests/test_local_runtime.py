"""`ray=local` is local: a run starts its own runtime whatever cluster runs (or ran) on the machine, and
joins one only with ray=cluster or RAY_ADDRESS, which it says, failing in seconds where nothing answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY, run_cli
from tests.storage_servers import answers, free_port, group_alive

ADDRESS_FILE = Path("/tmp/ray/ray_current_cluster")  # where `ray start` leaves its address; ray.init() reads it


def test_an_unreachable_ray_address_fails_in_seconds(tmp_path):
    port = free_port()  # nothing listens there
    res = run_cli(*TINY, f"hydra.run.dir={tmp_path}", env={"RAY_ADDRESS": f"127.0.0.1:{port}"}, timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"rlgraft: joining the Ray cluster at RAY_ADDRESS=127.0.0.1:{port}" in res.stdout.splitlines()[0]
    assert f"no Ray cluster answers at RAY_ADDRESS='127.0.0.1:{port}'" in res.stderr
    assert "unset it" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_a_local_run_ignores_a_cluster_on_the_machine_and_its_leftover_address(tmp_path):
    """A `ray start --head` with no CPUs is up: the default command must not send its trial there (it would
    be unplaceable). Then the head is killed, its address file stays behind: the default command must not
    hang trying to reach it."""
    saved = ADDRESS_FILE.read_bytes() if ADDRESS_FILE.exists() else None
    port = free_port()
    ray_cli = str(Path(sys.executable).parent / "ray")
    log = (tmp_path / "head.log").open("w")
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=0",
                             "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        deadline = time.monotonic() + 90
        while not (answers(port) and ADDRESS_FILE.exists() and str(port) in ADDRESS_FILE.read_text()):
            assert head.poll() is None and time.monotonic() < deadline, (tmp_path / "head.log").read_text()[-2000:]
            time.sleep(0.5)
        res = subprocess.run([sys.executable, "-m", "experiments.run", *TINY, f"hydra.run.dir={tmp_path}/a"],
                             cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
                             env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "Ray runtime started" in res.stdout and "cluster CPUs 2" in res.stdout
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
        deadline = time.monotonic() + 30
        while group_alive(head.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not group_alive(head.pid) and not answers(port)  # the head and its raylet and GCS are gone
    assert str(port) in ADDRESS_FILE.read_text()  # ... but its address file is left, pointing nowhere
    try:
        res = subprocess.run([sys.executable, "-m", "experiments.run", *TINY, f"hydra.run.dir={tmp_path}/b"],
                             cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
                             env=env)
        assert res.returncode == 0 and "Ray runtime started" in res.stdout, res.stderr[-3000:]
    finally:
        if saved is None:
            ADDRESS_FILE.unlink(missing_ok=True)
        else:
            ADDRESS_FILE.write_bytes(saved)


def test_ray_address_local_is_a_local_runtime_not_a_cluster(monkeypatch):
    """RAY_ADDRESS=local (or ray.address=local) is Ray's word for a runtime of the run's own: rlgraft starts
    it as it starts any local runtime, warm workers and one-worker start included, and says nothing about
    joining a cluster. It had read as a cluster address, so the trial imported RLlib cold."""
    from rlgraft import runtime
    from rlgraft.schema import RayConfig

    monkeypatch.delenv("RLGRAFT_CONCURRENT_JOBS", raising=False)
    for value in ("local", "LOCAL"):
        monkeypatch.setenv("RAY_ADDRESS", value)
        assert runtime.address_of(RayConfig()) is None and runtime.environment_address(RayConfig()) is None
    assert runtime.address_of(RayConfig(address="local")) is None
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert runtime.address_of(RayConfig()) == runtime.environment_address(RayConfig()) == "127.0.0.1:6379"
