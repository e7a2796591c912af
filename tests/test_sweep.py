"""Hydra multirun and Tune search: one Ray runtime, failures recorded, crash-safe re-runs, reports."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rlgraft
from rlgraft import configs, search
from tests.conftest import ROOT, TINY, run_cli

TINY_NO_STOP = [o for o in TINY if not o.startswith("stop.")]


def test_multirun_shares_ray_and_records_a_failing_job(tmp_path):
    res = run_cli("-m", *TINY, "seed=0,1", "env.id=Pendulum-v1,NoSuch-v0", f"hydra.sweep.dir={tmp_path}",
                  timeout=600)
    assert res.returncode != 0  # a job failed, and the sweep says so at the end...
    assert "jobs 1, 3 failed" in res.stderr
    jobs = {d.name: json.loads((d / "summary.json").read_text()) for d in tmp_path.iterdir() if d.name.isdigit()}
    assert [jobs[j]["status"] for j in "0123"] == ["ok", "error", "ok", "error"]  # ...but every job ran
    assert "NoSuch-v0" in jobs["1"]["error"]
    # each job has its own storage, so no tuner.pkl is shared or overwritten
    exp = {Path(jobs[j]["experiment_path"]) for j in "02"}
    assert len(exp) == 2 and all((p / "tuner.pkl").is_file() for p in exp)
    assert res.stdout.count("Ray runtime started") == 1 and res.stdout.count("Ray runtime reused") == 1
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "error", "ok", "error"]
    md = (tmp_path / "sweep.md").read_text()
    assert "`seed=0 env.id=Pendulum-v1`" in md and "returns_by_config.png" in md
    for png in ("returns_per_job.png", "returns_by_config.png"):
        assert (tmp_path / png).stat().st_size > 5000
    # `experiments.report DIR` rebuilds the same files
    for f in ("sweep.csv", "sweep.md", "returns_per_job.png"):
        (tmp_path / f).unlink()
    rebuilt = subprocess.run([sys.executable, "-m", "experiments.report", str(tmp_path)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert rebuilt.returncode == 0 and "4 jobs (2 failed)" in rebuilt.stdout
    assert list(csv.DictReader((tmp_path / "sweep.csv").open())) == rows


@pytest.mark.slow  # end to end, in CI's whole run (.ci/run); keeps the default run under 15 min
def test_grid_preset_runs_trials_concurrently(tmp_path):
    res = run_cli("experiment=pendulum_grid", *TINY_NO_STOP, "stop.num_env_steps_sampled_lifetime=512",
                  f"hydra.run.dir={tmp_path}", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    combos = {(t["config"]["lr"], t["config"]["minibatch_size"]) for t in s["trials"]}
    assert combos == {(0.001, 128), (0.001, 256), (0.0003, 128), (0.0003, 256)}
    assert all(t["status"] == "TERMINATED" and t["env_steps"] == 512 for t in s["trials"])
    assert "4 trial(s), 0 EnvRunner(s) each, 2 at a time" in res.stdout
    best = max(s["trials"], key=lambda t: t["metrics"]["env_runners/episode_return_mean"])
    assert s["checkpoint"] == best["checkpoint"]  # top-level fields describe the best trial
    # Its resume command continues that trial's settings rather than re-creating the grid.
    for pinned in (f"++algo.training.lr={best['config']['lr']}",
                   f"++algo.training.minibatch_size={best['config']['minibatch_size']}", "~tune.search.training"):
        assert pinned in s["resume_command"]
    pinned = [o for o in shlex.split(s["resume_command"])[3:-1] if not o.startswith("hydra.")]
    cfg = configs.prepare(rlgraft.compose(pinned), str(tmp_path / "resumed"))
    assert search.num_trials(cfg) == 1 and cfg.algo.training["lr"] == best["config"]["lr"]


@pytest.mark.slow  # end to end, in CI's whole run (.ci/run); keeps the default run under 15 min
def test_kill_9_then_rerun_skips_finished_and_resumes_the_rest(tmp_path):
    args = [sys.executable, "-m", "experiments.run", "-m", *TINY_NO_STOP, "checkpointing.frequency=1",
            "stop.num_env_steps_sampled_lifetime=512,12800", f"hydra.sweep.dir={tmp_path}"]
    log = (tmp_path.parent / "first.log").open("w")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(tmp_path.glob("1/tune/*/*/checkpoint_*"))) < 8:
        time.sleep(0.5)
    time.sleep(3)  # past one experiment-state snapshot (checkpointing.experiment_state_s=2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, as a crash or OOM kill would
    proc.wait()
    saved = len(list(tmp_path.glob("1/tune/*/*/checkpoint_*")))
    assert saved >= 8 and not (tmp_path / "1" / "summary.json").exists()
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{tmp_path}/0 already finished; skipping" in res.stdout
    first_iter = int(re.search(r"iter\s+(\d+)", res.stdout).group(1))
    assert first_iter > 8  # resumed from its own checkpoints, not from iteration 1
    s = json.loads((tmp_path / "1" / "summary.json").read_text())
    assert s["status"] == "ok" and s["iterations"] == 50 and s["env_steps"] == 12800


@pytest.mark.slow  # end to end, in CI's whole run (.ci/run); keeps the default run under 15 min
def test_optuna_sweeper_optimises_the_returned_metric(tmp_path):
    import yaml

    res = run_cli("-m", "experiment=optuna_lr", "hydra.sweeper.n_trials=2", *TINY, f"hydra.sweep.dir={tmp_path}",
                  timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    values = [json.loads((tmp_path / j / "summary.json").read_text())["metrics"]["env_runners/episode_return_mean"]
              for j in ("0", "1")]
    assert best["best_value"] == max(values)  # Optuna saw each job's returned metric
    assert 1e-4 <= best["best_params"]["algo.training.lr"] <= 3e-3
    assert (tmp_path / "sweep.md").is_file()


@pytest.mark.slow  # end to end, in CI's whole run (.ci/run); keeps the default run under 15 min
def test_asha_scheduler_stops_weak_trials_early(tmp_path):
    # Two seeds per grid point: with one seed every trial samples the same first iteration (same
    # weights, same env seeds), so the rung-1 results tie and ASHA's cut depended on arrival order.
    res = run_cli("experiment=pendulum_grid", *TINY_NO_STOP, "tune.scheduler=asha", "tune.grace_period=1",
                  "+tune.search.debugging.seed={grid:[0,1]}",
                  "stop.num_env_steps_sampled_lifetime=2048", f"hydra.run.dir={tmp_path}", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    iterations = sorted(t["iterations"] for t in s["trials"])
    assert len(iterations) == 8 and iterations[0] >= 1
    assert len({t["config"]["seed"] for t in s["trials"]}) == 2  # the searched seed reached the trials
    assert iterations[0] < 8 and iterations[-1] == 8  # ASHA cut at least one trial short; the best ran on
