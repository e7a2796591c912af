"""Orchestration overhead: `python -m experiments.run` vs the same PPO run in raw RLlib + Tune.

Whole processes, start to exit, alternating pairs. Prints medians and the ratio rlgraft / raw.
Usage: python bench/overhead.py [pairs] [--same-work R]
  default:        rlgraft as it runs (EnvRunners fitted: 0 on 2 CPUs) vs bench/raw_ppo.py with 1 EnvRunner
                  (different work: what each does out of the box)
  --same-work R:  both sides with R remote EnvRunners, so the only difference is rlgraft itself; the
                  network ([64,64] relu), hyperparameters (experiment=pendulum), 1 env per runner and
                  the stop (8000 env steps) are the same on both sides already
"""

from __future__ import annotations

import sys
import tempfile

from common import ROOT, alternate, machine, summary

args = sys.argv[1:]
same = None
if "--same-work" in args:
    i = args.index("--same-work")
    same = int(args[i + 1]) if i + 1 < len(args) else 0
    del args[i:i + 2]
pairs = int(args[0]) if args else 5
out = tempfile.mkdtemp(prefix="rlgraft-bench-")
py = sys.executable
rlgraft = [py, "-m", "experiments.run", "hydra.run.dir=" + out + "/${now:%H-%M-%S-%f}"]
raw = [py, str(ROOT / "bench" / "raw_ppo.py")]
if same is not None:
    rlgraft.append(f"algo.env_runners.num_env_runners={same}")
    raw.append(str(same))
print("mode:", f"same work, {same} remote EnvRunner(s) on both sides" if same is not None else "out of the box")
times = alternate({"rlgraft": rlgraft, "raw": raw}, pairs)
print(machine())
med = summary(times)
print(f"ratio rlgraft/raw (medians): {med['rlgraft'] / med['raw']:.3f}")
