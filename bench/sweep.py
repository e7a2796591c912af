"""A 4-job sweep: rlgraft's multirun (one Ray runtime, reused) vs the naive way (ray.init and
ray.shutdown around each job's Tuner, jobs one after another in one process). Same configs.

Usage: python bench/sweep.py [rounds]
"""

from __future__ import annotations

import sys
import tempfile

from common import ROOT, alternate, machine, summary

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
out = tempfile.mkdtemp(prefix="rlgraft-sweep-")
py = sys.executable
JOB = ["algo.training.train_batch_size_per_learner=1000", "algo.training.num_epochs=2",
       "stop.num_env_steps_sampled_lifetime=2000"]
times = alternate({
    "rlgraft": [py, "-m", "experiments.run", "-m", *JOB, "seed=0,1,2,3",
                "hydra.sweep.dir=" + out + "/${now:%H-%M-%S-%f}"],
    "naive": [py, str(ROOT / "bench" / "naive_sweep.py")],
}, rounds)
print(machine())
med = summary(times)
print(f"ratio naive/rlgraft (medians): {med['naive'] / med['rlgraft']:.3f}")
