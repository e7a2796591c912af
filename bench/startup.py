"""Where the time of `python -m experiments.run` goes: phase timestamps of whole processes.

Usage: python bench/startup.py [runs] [override ...]
  e.g. python bench/startup.py 3
       python bench/startup.py 3 experiment=pendulum_solve

Each run is a fresh process with RLGRAFT_TIMING=FILE, so the driver, the Tune trial and its
EnvRunners append `time.time()` at each phase (src/rlgraft/timing.py): imports done (Hydra and the
CLI, at `cli.launch`), compose + checks done (before Ray), ray.init done, the trial's process start
(/proc), its first env built, the algorithm built (`on_algorithm_init`), the first episode started
(the first env step follows it), each result (`on_train_result`), summary.json written. Process start
and exit are taken here, around the child (its stdout and stderr go to files, so a Ray process that
outlives it cannot hold a pipe open and lengthen the figure). After each run, processes left in the
run's process group are listed, at exit and 3 s later (each run starts a new session, so the driver
leads a group of its own that every Ray process it starts inherits).
A last run with `python -X importtime` splits the driver's imports by package (that run is not timed,
and is refused with algo.name=Nope once the imports are done).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine

args = sys.argv[1:]
runs = int(args.pop(0)) if args and args[0].isdigit() else 3
overrides = args
out = Path(tempfile.mkdtemp(prefix="rlgraft-startup-"))
PHASES = ["imports done", "ray.init started", "trial process started", "worker warm-up started",
          "torch and RLlib imported", "ray.init done in the background", "checks done", "ray.init done",
          "worker warmed", "env created", "algorithm built", "first episode started", "first result",
          "last result", "summary written", "process exit"]
LABELS = {"imports done": "imports done (Python, Hydra, CLI)", "checks done": "compose + checks done",
          "ray.init started": "ray.init started in the background (CLI, after the config's own checks)",
          "ray.init done": "ray.init done (as rlgraft.run connects)",
          "trial process started": "trial process started (an idle worker Ray started with the runtime)",
          "worker warm-up started": "its warm-up import started (`ray.warm_imports`, in the background)",
          "worker warmed": "its warm-up import done", "env created": "first env built in the trial",
          "algorithm built": "algorithm built (on_algorithm_init)",
          "first episode started": "first env step (first episode started)"}


def left_over(pgid: int) -> list[str]:
    """Processes still in the run's process group (the driver leads it: `start_new_session`)."""
    ps = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True).stdout
    return [line.strip()[:100] for line in ps.splitlines()
            if line.split()[1:2] == [str(pgid)] and not line.split()[2].startswith("Z")]  # zombies have ended


def one(i: int) -> dict[str, float]:
    log = out / f"timing-{i}.log"
    cmd = [sys.executable, "-m", "experiments.run", *overrides, f"hydra.run.dir={out}/run-{i}"]
    with open(out / f"stdout-{i}.txt", "w") as so, open(out / f"stderr-{i}.txt", "w") as se:
        start = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=so, stderr=se, start_new_session=True,
                                env={**os.environ, "RLGRAFT_TIMING": str(log)})
        code = proc.wait()
        end = time.time()
    now, later = left_over(proc.pid), (time.sleep(3), left_over(proc.pid))[1]
    if code != 0:
        raise SystemExit(f"run {i} failed ({code}); see {out}/stderr-{i}.txt")
    t: dict[str, float] = {}
    results = []
    lines = [line.split(" ", 2) for line in log.read_text().splitlines()]
    trial = next((pid for _, pid, phase in lines if phase == "algorithm built"), None)
    for stamp, pid, phase in lines:
        if phase == "result":
            results.append(float(stamp))
        elif phase.startswith("worker warm"):  # every idle worker warms up; the trial's is the one waited for
            if pid == trial:
                t.setdefault(phase, float(stamp))
        else:
            t.setdefault(phase, float(stamp))
    t["first result"], t["last result"], t["process exit"] = results[0], results[-1], end
    rel = {k: v - start for k, v in t.items()}
    print(f"run {i + 1}: " + ", ".join(f"{k} {rel[k]:.2f}" for k in PHASES if k in rel), flush=True)
    print(f"  left in its process group at exit: {len(now)}, 3 s later: {len(later)}"
          + "".join(f"\n    {p}" for p in later), flush=True)
    return rel


WATCH = ["hydra", "rlgraft.cli", "ray", "ray.tune", "torch", "ray.rllib", "ray.rllib.algorithms.ppo", "gymnasium"]


def imports() -> list[tuple[str, float]]:
    """Cumulative import time of the driver's big packages where each was first imported (`-X importtime`)."""
    # algo.name=Nope: refused right after the driver's imports (no training to wait for).
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "experiments.run", *overrides, "algo.name=Nope",
                          f"hydra.run.dir={out}/importtime"], cwd=ROOT, capture_output=True, text=True)
    first: dict[str, float] = {}
    for line in res.stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = line.removeprefix("import time:").split("|")
            first.setdefault(name.strip(), int(cumulative) / 1e6)
    return [(name, first[name]) for name in WATCH if name in first]


rows = [one(i) for i in range(runs)]
print(machine(), "|", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "| overrides:", " ".join(overrides))
print("\n| phase | median s since process start | median s after the row above | min - max (since start) |")
print("|---|---|---|---|")
for phase in PHASES:
    have = [r[phase] for r in rows if phase in r]
    if not have:
        continue
    med = statistics.median(have)
    deltas = [r[phase] - max((r[p] for p in PHASES[:PHASES.index(phase)] if p in r), default=0.0) for r in rows
              if phase in r]
    print(f"| {LABELS.get(phase, phase)} | {med:.2f} | {statistics.median(deltas):.2f} | "
          f"{min(have):.2f} - {max(have):.2f} |")
first_step = statistics.median(r["first episode started"] for r in rows)
tail = statistics.median(r["process exit"] - r["last result"] for r in rows)
print(f"\nstart to first env step: {first_step:.2f} s (goal <= 4); last result to exit: {tail:.2f} s (goal <= 1)")
print("\nimports in the driver by package (-X importtime, cumulative s, one run):",
      ", ".join(f"{name} {s:.2f}" for name, s in imports()))
