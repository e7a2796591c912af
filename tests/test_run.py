"""End-to-end runs through the real `python -m experiments.run` entry point (tiny PPO batches)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import TINY, run_cli


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("preset, modules", [("pendulum", {"default_policy"}),
                                             ("multi_pendulum", {"p0", "p1"})])
def test_cli_run_writes_summary_and_checkpoint(preset, modules, tmp_path):
    res = run_cli(f"experiment={preset}", *TINY, "stop.num_env_steps_sampled_lifetime=512",
                  f"hydra.run.dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-3000:]
    s = summary_of(tmp_path)
    assert s["status"] == "ok" and s["env_steps"] == 512 and s["iterations"] == 2
    assert Path(s["checkpoint"]).is_absolute() and (Path(s["checkpoint"]) / "rllib_checkpoint.json").is_file()
    assert Path(s["checkpoint"]).is_relative_to(tmp_path)  # Tune storage lives in the Hydra output dir
    module_dirs = {p.name for p in (Path(s["checkpoint"]) / "learner_group/learner/rl_module").iterdir()
                   if p.is_dir()}
    assert module_dirs == modules
    assert s["metrics"]["num_env_steps_sampled_lifetime"] == 512 and s["wall_s"] > 0
    assert len(s["trials"]) == 1 and s["trials"][0]["checkpoint"] == s["checkpoint"]
    # Progress lines a person can read, the checkpoint and the exact resume command.
    assert "iter    2 | env steps      512" in res.stdout
    assert f"checkpoint: {s['checkpoint']}" in res.stdout
    assert s["resume_command"] in res.stdout and "+resume=" in s["resume_command"]
    if preset == "multi_pendulum":
        assert "experiment=multi_pendulum" in s["resume_command"]
    # Tune's own CSV/TensorBoard/JSON logs are kept.
    trial = Path(s["trials"][0]["path"])
    assert (trial / "progress.csv").is_file() and list(trial.glob("events.out.tfevents*"))


def test_printed_resume_command_works_with_quoted_path(tmp_path):
    """Tune trial folders of a search carry '=' and ','; the printed command quotes them for Hydra."""
    from rlgraft.report import resume_command

    first = tmp_path / "first"
    res = run_cli(*TINY, f"hydra.run.dir={first}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert summary_of(first)["resume_command"] in res.stdout
    odd = tmp_path / "PPO_lr=0.001,seed=1" / "checkpoint_000000"
    shutil.copytree(summary_of(first)["checkpoint"], odd)
    second = tmp_path / "second"
    cmd = resume_command(str(odd), " ".join([*TINY, "stop.num_env_steps_sampled_lifetime=512",
                                             f"hydra.run.dir={second}"]),
                         program=f"{sys.executable} -m experiments.run")
    res = subprocess.run(cmd, shell=True, capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr[-3000:]
    assert summary_of(second)["restore"]["checkpoint"] == str(odd)
    assert summary_of(second)["env_steps"] == 512 and summary_of(second)["iterations"] == 2


def test_stop_key_never_reported_ends_with_an_error(tmp_path):
    res = run_cli(*TINY, "+stop.my_custom_metric=5", "stop.num_env_steps_sampled_lifetime=100000",
                  f"hydra.run.dir={tmp_path}")
    assert res.returncode == 2
    assert "stop key `my_custom_metric` never appeared" in res.stderr
    assert summary_of(tmp_path)["iterations"] == 3  # stopped after the grace iterations, not run forever


def test_per_agent_stop_ends_the_run_when_every_agent_reaches_it(tmp_path):
    """`-300 per agent` style stop, through Hydra, Tune and real per-agent results."""
    res = run_cli("experiment=multi_pendulum", *TINY, "stop.num_env_steps_sampled_lifetime=2048",
                  "+stop={env_runners/agent_episode_returns_mean/*: -100000}", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-3000:]
    s = summary_of(tmp_path)
    per_agent = {k: v for k, v in s["metrics"].items() if k.startswith("env_runners/agent_episode_returns_mean/")}
    assert len(per_agent) == 2 and all(v >= -100000 for v in per_agent.values())
    assert s["iterations"] == 1 and s["env_steps"] == 256  # stopped by the per-agent key, not the step count


def test_impossible_resource_request_fails_at_once(tmp_path):
    res = run_cli(*TINY, "algo.env_runners.num_env_runners=6", "ray.num_cpus=2",
                  f"hydra.run.dir={tmp_path}", timeout=120)
    assert res.returncode == 2
    assert "asks for 7 CPU" in res.stderr and "only 2 CPU" in res.stderr and "PENDING" in res.stderr
    assert not (tmp_path / "tune").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ray_head(tmp_path_factory):
    """A real `ray start --head` on loopback with its own temp dir, stopped (only it) afterwards."""
    temp = Path(f"/tmp/rgh{uuid.uuid4().hex[:6]}")
    port = _free_port()
    ray_bin = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}",
                    "--disable-usage-stats"], check=True, capture_output=True, timeout=120, env=env)
    yield f"127.0.0.1:{port}"
    # `ray stop` would stop every Ray runtime of this user; end only the processes of this head.
    out = subprocess.run(["pgrep", "-f", str(temp)], capture_output=True, text=True)
    for pid in out.stdout.split():
        subprocess.run(["kill", "-9", pid], capture_output=True)
    shutil.rmtree(temp, ignore_errors=True)


def test_connects_to_an_existing_cluster(ray_head, tmp_path):
    res = run_cli("ray=cluster", f"ray.address={ray_head}", *TINY, f"hydra.run.dir={tmp_path}",
                  env={"RAY_ADDRESS": ""})
    assert res.returncode == 0, res.stderr[-3000:]
    s = summary_of(tmp_path)
    assert s["status"] == "ok" and s["env_steps"] == 256
    assert s["config"]["ray"]["address"] == ray_head
    assert f"Ray runtime connected (ray.address={ray_head!r}), cluster CPUs 2" in res.stdout


def test_unreachable_cluster_is_a_clear_error(tmp_path):
    res = run_cli("ray=cluster", f"ray.address=127.0.0.1:{_free_port()}", *TINY,
                  f"hydra.run.dir={tmp_path}", timeout=180)
    assert res.returncode == 2
    assert "no Ray cluster answers at ray.address='127.0.0.1:" in res.stderr
