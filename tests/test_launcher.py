"""`hydra/launcher=rlgraft`: sweep jobs run concurrently in workers that join one Ray runtime, and keep
what a sweep has under the basic launcher (own storage, failures recorded, report, skip on re-run)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import TINY, run_cli


def trial_window(job: Path) -> tuple[float, float]:
    """(first iteration's start, last iteration's end) of a job's trial, from Tune's result.json."""
    summary = json.loads((job / "summary.json").read_text())
    rows = [json.loads(line) for line in (Path(summary["trials"][0]["path"]) / "result.json").read_text().splitlines()]
    return rows[0]["timestamp"] - rows[0]["time_this_iter_s"], rows[-1]["timestamp"]


@pytest.mark.slow  # end to end, in CI's whole run (.ci/run); keeps the default run under 15 min
def test_jobs_run_concurrently_on_one_runtime_and_keep_the_sweep(tmp_path):
    # 8192 steps: long enough that the two trials overlap although one may start seconds after the
    # other (one in a warm idle worker, one in a new worker that imports RLlib first).
    args = ["-m", "hydra/launcher=rlgraft", *TINY, "stop.num_env_steps_sampled_lifetime=8192",
            "seed=0,1", "env.id=Pendulum-v1,NoSuch-v0", f"hydra.sweep.dir={tmp_path}"]
    res = run_cli(*args, timeout=600)
    assert res.returncode != 0 and "jobs 1, 3 failed" in res.stderr  # the failures are recorded, the rest ran
    assert "rlgraft launcher: 4 jobs, 2 at a time" in res.stderr + res.stdout
    jobs = {d.name: json.loads((d / "summary.json").read_text()) for d in tmp_path.iterdir() if d.name.isdigit()}
    assert [jobs[j]["status"] for j in "0123"] == ["ok", "error", "ok", "error"]
    assert "NoSuch-v0" in jobs["1"]["error"]
    assert len({jobs[j]["experiment_path"] for j in "02"}) == 2  # own storage per job
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "error", "ok", "error"]
    # The two good jobs trained at the same time (job 1 fails at once, so 0 and 2 overlap).
    (a0, b0), (a2, b2) = trial_window(tmp_path / "0"), trial_window(tmp_path / "2")
    assert a0 < b2 and a2 < b0, ((a0, b0), (a2, b2))
    # A re-run of the same command skips the finished jobs and re-runs only the failed ones.
    before = {j: (tmp_path / j / "summary.json").read_text() for j in "02"}
    again = run_cli(*args, timeout=600)
    assert again.stdout.count("already finished; skipping") == 2
    assert all((tmp_path / j / "summary.json").read_text() == before[j] for j in "02")


def test_each_concurrent_job_fits_runners_to_its_share(monkeypatch):
    """RLGRAFT_CONCURRENT_JOBS (set by the launcher in its workers) divides the CPUs among the jobs."""
    from tests.test_resources import fitted

    cluster = {"CPU": 16.0}
    alone = fitted(["resources.max_env_runners=8"], cluster)
    monkeypatch.setenv("RLGRAFT_CONCURRENT_JOBS", "4")
    shared = fitted(["resources.max_env_runners=8"], cluster)
    assert (alone.num_env_runners, shared.num_env_runners) == (8, 3)  # 16 CPUs alone; 4 each of 4 jobs
