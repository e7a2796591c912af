"""4 seeds of the default experiment as one Hydra multirun: rlgraft's concurrent launcher
(`hydra/launcher=rlgraft`, jobs in workers sharing one Ray runtime) vs Hydra's basic launcher (jobs one
after another, one Ray runtime reused). Whole processes, alternated; prints medians and the ratio.

Usage: python bench/concurrent_sweep.py [rounds] [extra overrides ...]
"""

from __future__ import annotations

import sys
import tempfile

from common import alternate, machine, summary

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
extra = sys.argv[2:]
out = tempfile.mkdtemp(prefix="rlgraft-concurrent-")
py = sys.executable
sweep = [py, "-m", "experiments.run", "-m", "seed=0,1,2,3", *extra]
times = alternate({
    "concurrent": [*sweep, "hydra/launcher=rlgraft", "hydra.sweep.dir=" + out + "/c-${now:%H-%M-%S-%f}"],
    "sequential": [*sweep, "hydra.sweep.dir=" + out + "/s-${now:%H-%M-%S-%f}"],
}, rounds)
print(machine())
med = summary(times)
print(f"ratio concurrent/sequential (medians): {med['concurrent'] / med['sequential']:.3f}")
