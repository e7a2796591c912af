"""The CLI's start and exit: Ray started in the background only after the config's own checks, a
refusal after that start and a finished run both leaving no Ray process behind (real Ray, fresh
processes in sessions of their own, so every process Ray starts is in the run's process group)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.conftest import ROOT, TINY


def run_in_session(tmp_path, *overrides: str) -> tuple[subprocess.CompletedProcess, int, str]:
    timing = tmp_path / "timing.log"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.run", *overrides, f"hydra.run.dir={tmp_path}/run"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "RLGRAFT_TIMING": str(timing)})
    out, err = proc.communicate(timeout=600)
    return (subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid,
            timing.read_text() if timing.is_file() else "")


def left_in_group(pgid: int, settle_s: float = 15.0) -> list[str]:
    """Live (non-zombie) processes of the group, after giving killed ones time to be reaped."""
    deadline = time.monotonic() + settle_s
    while True:
        ps = subprocess.run(["ps", "-eo", "pgid=,stat=,args="], capture_output=True, text=True).stdout
        live = [line for line in ps.splitlines()
                if line.split()[0] == str(pgid) and not line.split()[1].startswith("Z")]
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.5)


def test_a_typo_starts_no_ray(tmp_path):
    res, _, marks = run_in_session(tmp_path, *TINY, "+algo.trainig.lr=0.1")
    assert res.returncode == 2 and "is not a key of `algo`" in res.stderr
    assert "ray.init" not in marks  # refused by the config's own checks, before the background start


def test_a_refusal_after_the_background_start_leaves_nothing(tmp_path):
    res, pid, marks = run_in_session(tmp_path, *TINY, "algo.name=Nope")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]  # one paragraph, no Ray noise
    assert "algo.name='Nope' is not an RLlib algorithm" in res.stderr
    assert "ray.init started" in marks  # this refusal did come after Ray was started
    assert left_in_group(pid) == []
    assert not (tmp_path / "run" / "tune").exists()


def test_a_finished_run_exits_without_leaving_ray_processes(tmp_path):
    # 2 CPUs on any machine: one trial sampling in its own process, so the first idle worker warms alone.
    res, pid, marks = run_in_session(tmp_path, *TINY, "ray.num_cpus=2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "run" / "summary.json").is_file()
    assert "ray.init done in the background" in marks and "summary written" in marks
    assert left_in_group(pid) == []
    # The trial ran in one of the idle workers Ray started with the runtime (so before ray.init
    # returned), which had imported RLlib as it started: Tune's own runtime_env would need a new one.
    stamp = {phase: (float(t), p) for t, p, phase in reversed([line.split(" ", 2) for line in marks.splitlines()])}
    trial_pid = stamp["algorithm built"][1]
    assert stamp["trial process started"][0] < stamp["ray.init done in the background"][0]
    assert any(line.split(" ", 2)[1:] == [trial_pid, "worker warmed"] for line in marks.splitlines())
    # ...and in the first of them, which imported alone (the others wait for it: RLGRAFT_WARM_FIRST).
    warmed = sorted((float(t), p) for t, p, phase in [line.split(" ", 2) for line in marks.splitlines()]
                    if phase == "worker warmed")
    assert warmed[0][1] == trial_pid, (warmed, trial_pid)
    others = [float(t) for t, p, phase in [line.split(" ", 2) for line in marks.splitlines()]
              if phase == "worker warm-up started" and p != trial_pid]
    assert all(t >= warmed[0][0] for t in others), (others, warmed)  # no import beside the trial's
