"""Orchestration overhead: `python -m experiments.run` vs the same PPO run in raw RLlib + Tune.

Whole processes, start to exit, alternating pairs. Prints medians and the ratio rlgraft / raw.
Usage: python bench/overhead.py [pairs]
"""

from __future__ import annotations

import sys
import tempfile

from common import ROOT, alternate, machine, summary

pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
out = tempfile.mkdtemp(prefix="rlgraft-bench-")
py = sys.executable
times = alternate({
    "rlgraft": [py, "-m", "experiments.run", "hydra.run.dir=" + out + "/${now:%H-%M-%S-%f}"],
    "raw": [py, str(ROOT / "bench" / "raw_ppo.py")],
}, pairs)
print(machine())
med = summary(times)
print(f"ratio rlgraft/raw (medians): {med['rlgraft'] / med['raw']:.3f}")
