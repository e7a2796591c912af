"""Time to solve Pendulum-v1: rlgraft `experiment=pendulum_solve` vs Stable-Baselines3 PPO with RL Zoo's
tuned `Pendulum-v1` entry (`bench/sb3_pendulum.py`), whole processes from start to exit, seeds
alternated. Both stop when the mean of the last 20 episodes' true returns is >= -300 (or 400k env steps).

Usage: python bench/vs_sb3.py [seeds] [override ...]     (run with the bench venv's python: README)
Prints each run (wall, env steps, start to first env step, training, stop to exit), the medians and
the ratio rlgraft / SB3 of the median wall times.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine

from rlgraft.stopping import reached, stop_thresholds

args = sys.argv[1:]
seeds = int(args.pop(0)) if args and args[0].isdigit() else 3
overrides = args
out = Path(tempfile.mkdtemp(prefix="rlgraft-vs-sb3-"))
py = sys.executable
rows: dict[str, list[dict[str, float]]] = {"rlgraft": [], "sb3": []}


def whole(cmd: list[str], name: str, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(start, exit) as time.time() and stdout; output to files so no pipe outlives the process."""
    with open(out / f"{name}.out", "w") as so, open(out / f"{name}.err", "w") as se:
        start = time.time()
        code = subprocess.Popen(cmd, cwd=ROOT, stdout=so, stderr=se, env={**os.environ, **(env or {})}).wait()
        end = time.time()
    if code != 0:
        raise SystemExit(f"{name} failed ({code}): see {out}/{name}.err")
    return start, end, (out / f"{name}.out").read_text()


def record(name: str, seed: int, row: dict[str, float]) -> None:
    rows[name].append(row)
    print(f"seed {seed}: {name:>7} {row['wall']:6.1f} s, env steps {row['steps']:7.0f}, solved {bool(row['solved'])}, "
          f"start to first env step {row['startup']:5.1f} s, training {row['training']:5.1f} s, "
          f"stop to exit {row['tail']:4.2f} s", flush=True)


for seed in range(seeds):
    timing = out / f"rlgraft-{seed}.timing"
    start, end, _ = whole([py, "-m", "experiments.run", "experiment=pendulum_solve", f"seed={seed}", *overrides,
                           f"hydra.run.dir={out}/rlgraft-{seed}"], f"rlgraft-{seed}", {"RLGRAFT_TIMING": str(timing)})
    marks: dict[str, float] = {}
    for line in timing.read_text().splitlines():
        stamp, _, phase = line.split(" ", 2)
        marks[phase] = float(stamp) if phase == "result" else marks.get(phase, float(stamp))
    s = json.loads((out / f"rlgraft-{seed}" / "summary.json").read_text())
    goal = {k: v for k, v in stop_thresholds(s["config"]["stop"]).items() if "return" in k}
    first = marks["first episode started"]
    record("rlgraft", seed, {"wall": end - start, "steps": s["env_steps"], "startup": first - start,
                             "training": marks["result"] - first, "tail": end - marks["result"],
                             "solved": all(reached(s["metrics"], k, v) for k, v in goal.items())})

    start, end, text = whole([py, str(ROOT / "bench" / "sb3_pendulum.py"), str(seed)], f"sb3-{seed}")
    t = {line.split()[1]: float(line.split()[2]) for line in text.splitlines() if line.startswith("T ")}
    solve = next(x for x in text.splitlines() if x.startswith("SOLVE")).split()
    record("sb3", seed, {"wall": end - start, "steps": float(solve[-1]), "startup": t["first_step"] - start,
                         "training": t["solved"] - t["first_step"], "tail": end - t["solved"],
                         "solved": solve[1] == "1"})

print(machine(), "|", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
print("\n| | median wall (s) | min - max | median env steps | start to first env step | training | stop to exit "
      "| solved |")
print("|---|---|---|---|---|---|---|---|")
med = {}
for name, rs in rows.items():
    walls = [r["wall"] for r in rs]
    med[name] = statistics.median(walls)
    m = {k: statistics.median(r[k] for r in rs) for k in ("steps", "startup", "training", "tail")}
    print(f"| {name} | {med[name]:.1f} | {min(walls):.1f} - {max(walls):.1f} | {m['steps']:,.0f} | "
          f"{m['startup']:.1f} s | {m['training']:.1f} s | {m['tail']:.2f} s | "
          f"{sum(bool(r['solved']) for r in rs)}/{len(rs)} |")
print(f"\nratio rlgraft/SB3 (median wall to solve): {med['rlgraft'] / med['sb3']:.3f} (goal <= 0.75)")
