"""Time to solve Pendulum (mean return >= -300): `experiment=pendulum_solve` vs RLlib's tuned example
adapted to the same CPUs (bench/anchor_pendulum.py). Whole processes, seeds alternated.

Usage: python bench/solve.py [seeds]     (prints medians, the ratio, and any run that did not solve)
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, run_logged

seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
out = Path(tempfile.mkdtemp(prefix="rlgraft-solve-"))
py = sys.executable
rows: dict[str, list[tuple[float, bool, int]]] = {"rlgraft": [], "anchor": []}
for seed in range(seeds):
    start = time.perf_counter()
    run_logged([py, "-m", "experiments.run", "experiment=pendulum_solve", f"seed={seed}",
                f"hydra.run.dir={out}/rlgraft-{seed}"])
    took = time.perf_counter() - start
    s = json.loads((out / f"rlgraft-{seed}" / "summary.json").read_text())
    solved = s["metrics"]["env_runners/episode_return_mean"] >= -300
    rows["rlgraft"].append((took, solved, s["env_steps"]))
    print(f"seed {seed}: rlgraft {took:7.1f} s, steps {s['env_steps']}, solved {solved}", flush=True)
    start = time.perf_counter()
    text = run_logged([py, str(ROOT / "bench" / "anchor_pendulum.py"), str(seed)])
    took = time.perf_counter() - start
    line = next(x for x in text.splitlines() if x.startswith("SOLVE"))
    rows["anchor"].append((took, line.split()[1] == "1", int(float(line.split()[-1]))))
    print(f"seed {seed}: anchor  {took:7.1f} s, steps {line.split()[-1]}, solved {line.split()[1] == '1'}",
          flush=True)
print(machine())
med = {}
for name, rs in rows.items():
    times = [t for t, _, _ in rs]
    med[name] = statistics.median(times)
    print(f"{name:>8}: median {med[name]:7.1f} s (min {min(times):.1f}, max {max(times):.1f}); "
          f"median steps {statistics.median(s for _, _, s in rs):.0f}; solved {sum(ok for _, ok, _ in rs)}/{len(rs)}")
print(f"ratio rlgraft/anchor (median wall to solve): {med['rlgraft'] / med['anchor']:.3f}")
