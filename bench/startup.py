"""Where the time of `python -m experiments.run` goes: phase timestamps of whole processes, beside the
machine's floor measured in the same rounds.

Usage: python bench/startup.py [runs] [--before[=VAR=VALUE,...]] [--tiny] [override ...]
  e.g. python bench/startup.py 3 --tiny          # one 500-step iteration, then exit (issue 25's "tiny run")
       python bench/startup.py 3 --before --tiny # also with Ray's workers started when the driver registers
       python bench/startup.py 3 --before=RLGRAFT_WARM_TOGETHER=1 --tiny  # every idle worker importing at once
       python bench/startup.py 3 experiment=pendulum_solve

Each round measures, one after another: the floor, rlgraft, and with --before rlgraft with the variables
given set (by default RLGRAFT_PRESTART=0: Ray's idle workers started when the first driver registers, at
the end of `ray.init`, as before 2026-12-08).
The floor: two whole processes started at the same moment, `import ray` + `ray.init` (timed to
ray.init's return) and `import ray.rllib.algorithms.ppo` (timed to its exit), the later of the two. A trial's first env
step needs both, in whichever processes; no launcher on this machine goes below it.

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
given = [a for a in args if a == "--before" or a.startswith("--before=")]
before = bool(given)
BEFORE = dict(kv.split("=", 1) for kv in given[0].removeprefix("--before").lstrip("=").split(",") if kv) \
    if given and given[0] != "--before" else {"RLGRAFT_PRESTART": "0"}
TINY = ["stop.num_env_steps_sampled_lifetime=500", "algo.training.train_batch_size_per_learner=500"]
overrides = [a for a in args if a != "--tiny" and a not in given] + (TINY if "--tiny" in args else [])
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


INIT = ("import time, ray; ray.init(address='local', num_cpus=2, include_dashboard=False, log_to_driver=False); "
        "print(time.time(), flush=True); ray.shutdown()")


def floor(i: int) -> dict[str, float]:
    """`import ray` + `ray.init` and `import ray.rllib.algorithms.ppo`, started together as whole processes."""
    start = time.time()
    init = subprocess.Popen([sys.executable, "-c", INIT], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True, env={**os.environ, "RAY_ADDRESS": "local"})
    rllib = subprocess.Popen([sys.executable, "-c", "import ray.rllib.algorithms.ppo"])
    assert rllib.wait() == 0, "import ray.rllib.algorithms.ppo failed"
    imported = time.time() - start
    assert init.stdout is not None
    initialized = float(init.stdout.readline()) - start
    init.wait()
    row = {"ray.init": initialized, "RLlib import": imported, "floor": max(initialized, imported)}
    print(f"round {i + 1}: floor {row['floor']:.2f} (import ray + ray.init {initialized:.2f}, "
          f"import ray.rllib.algorithms.ppo {imported:.2f})", flush=True)
    return row


def one(i: int, label: str = "", env: dict[str, str] | None = None) -> dict[str, float]:
    name = f"{label}{i}"
    log = out / f"timing-{name}.log"
    cmd = [sys.executable, "-m", "experiments.run", *overrides, f"hydra.run.dir={out}/run-{name}"]
    with open(out / f"stdout-{name}.txt", "w") as so, open(out / f"stderr-{name}.txt", "w") as se:
        start = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=so, stderr=se, start_new_session=True,
                                env={**os.environ, **(env or {}), "RLGRAFT_TIMING": str(log)})
        code = proc.wait()
        end = time.time()
    now, later = left_over(proc.pid), (time.sleep(3), left_over(proc.pid))[1]
    if code != 0:
        raise SystemExit(f"run {name} failed ({code}); see {out}/stderr-{name}.txt")
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
    warmed = sorted((float(stamp), pid) for stamp, pid, phase in lines if phase == "worker warmed")
    print(f"{label or 'rlgraft '}run {i + 1}: " + ", ".join(f"{k} {rel[k]:.2f}" for k in PHASES if k in rel),
          flush=True)
    print(f"  the trial ran in the idle worker warmed {'first' if warmed and warmed[0][1] == trial else 'later'} "
          f"(of {len(warmed)} warmed)", flush=True)
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


floors, rows, befores = [], [], []
for i in range(runs):
    floors.append(floor(i))
    rows.append(one(i))
    if before:
        befores.append(one(i, "before ", BEFORE))
print(machine(), "|", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "| overrides:", " ".join(overrides))


def table(rows: list[dict[str, float]], title: str) -> None:
    print(f"\n{title}\n\n| phase | median s since process start | median s after the row above | "
          "min - max (since start) |\n|---|---|---|---|")
    for phase in PHASES:
        have = [r[phase] for r in rows if phase in r]
        if not have:
            continue
        med = statistics.median(have)
        deltas = [r[phase] - max((r[p] for p in PHASES[:PHASES.index(phase)] if p in r), default=0.0)
                  for r in rows if phase in r]
        print(f"| {LABELS.get(phase, phase)} | {med:.2f} | {statistics.median(deltas):.2f} | "
              f"{min(have):.2f} - {max(have):.2f} |")


table(rows, "rlgraft:")
if befores:
    table(befores, "before (" + ", ".join(f"{k}={v}" for k, v in BEFORE.items()) + "):")
print("\n| floor, whole processes started together | median s | min - max |\n|---|---|---|")
for key in ("ray.init", "RLlib import", "floor"):
    have = [f[key] for f in floors]
    print(f"| {key} | {statistics.median(have):.2f} | {min(have):.2f} - {max(have):.2f} |")
low = statistics.median(f["floor"] for f in floors)
for title, rs in (("rlgraft", rows), ("before", befores)):
    if rs:
        first_step = statistics.median(r["first episode started"] for r in rs)
        whole = statistics.median(r["process exit"] for r in rs)
        tail = statistics.median(r["process exit"] - r["last result"] for r in rs)
        print(f"\n{title}: first env step {first_step:.2f} s, {first_step - low:+.2f} s from the floor (goal <= 1.5); "
              f"whole run {whole:.2f} s, {whole - low:+.2f} s from the floor (goal <= 2.2 for a tiny run); "
              f"last result to exit {tail:.2f} s")
print("\nimports in the driver by package (-X importtime, cumulative s, one run):",
      ", ".join(f"{name} {s:.2f}" for name, s in imports()))
