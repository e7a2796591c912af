"""Time to solve: a solve preset vs RLlib's tuned example adapted to the same CPUs, whole processes,
seeds alternated, median wall from process start to exit.

Usage: python bench/solve.py [seeds] [pendulum|multi]
  pendulum: experiment=pendulum_solve vs bench/anchor_pendulum.py (mean return >= -300)
  multi:    experiment=multi_pendulum_solve vs bench/anchor_multi_pendulum.py (every agent >= -300)
Prints each run, the medians, the ratio, and how many runs solved.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, run_logged

from rlgraft.stopping import reached, stop_thresholds

TARGETS = {"pendulum": ("pendulum_solve", "anchor_pendulum.py"),
           "multi": ("multi_pendulum_solve", "anchor_multi_pendulum.py")}
seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
preset, anchor = TARGETS[sys.argv[2] if len(sys.argv) > 2 else "pendulum"]
out = Path(tempfile.mkdtemp(prefix="rlgraft-solve-"))
py = sys.executable
rows: dict[str, list[tuple[float, bool, int]]] = {"rlgraft": [], "anchor": []}


def record(name: str, seed: int, took: float, solved: bool, steps: int) -> None:
    rows[name].append((took, solved, steps))
    print(f"seed {seed}: {name:>8} {took:7.1f} s, env steps {steps:7d}, solved {solved}", flush=True)


for seed in range(seeds):
    start = time.perf_counter()
    run_logged([py, "-m", "experiments.run", f"experiment={preset}", f"seed={seed}",
                f"hydra.run.dir={out}/rlgraft-{seed}"])
    took = time.perf_counter() - start
    s = json.loads((out / f"rlgraft-{seed}" / "summary.json").read_text())
    goal = {k: v for k, v in stop_thresholds(s["config"]["stop"]).items() if "return" in k}
    record("rlgraft", seed, took, all(reached(s["metrics"], k, v) for k, v in goal.items()), s["env_steps"])
    start = time.perf_counter()
    text = run_logged([py, str(ROOT / "bench" / anchor), str(seed)])
    took = time.perf_counter() - start
    line = next(x for x in text.splitlines() if x.startswith("SOLVE")).split()
    record("anchor", seed, took, line[1] == "1", int(float(line[-1])))

print(machine())
med = {}
for name, rs in rows.items():
    times = [t for t, _, _ in rs]
    med[name] = statistics.median(times)
    print(f"{name:>8}: median {med[name]:7.1f} s (min {min(times):.1f}, max {max(times):.1f}); "
          f"median env steps {statistics.median(s for _, _, s in rs):.0f}; "
          f"solved {sum(ok for _, ok, _ in rs)}/{len(rs)}")
print(f"ratio rlgraft/anchor ({preset}, median wall to solve): {med['rlgraft'] / med['anchor']:.3f}")
