"""EnvRunner scaling: env steps per second of `experiment=pendulum_solve` as remote EnvRunners go
0, 1, 2, ... (same preset, a fixed env-step budget, the return stop turned off).

Usage: python bench/scaling.py [max_runners] [env_steps] [--gpu]
  max_runners defaults to CPUs - 1; --gpu puts the learner on the GPU (num_gpus_per_learner=1).
Prints, per runner count: training env steps/s (env steps / Tune's time_total_s), the sampling and
learner-update time per iteration, and the speed-up over 0 runners.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from common import machine, run_logged

args = [a for a in sys.argv[1:] if not a.startswith("--")]
gpu = "--gpu" in sys.argv
max_runners = int(args[0]) if args else max(0, (os.cpu_count() or 1) - 1)
steps = int(args[1]) if len(args) > 1 else 40_000
counts = sorted({0, *[n for n in (1, 2, 4, 8, 12, 15) if n < max_runners], max_runners})
out = Path(tempfile.mkdtemp(prefix="rlgraft-scaling-"))
base = None
print(machine(), "| learner on GPU" if gpu else "| learner on CPU", flush=True)
for n in counts:
    run_logged([sys.executable, "-m", "experiments.run", "experiment=pendulum_solve",
                f"algo.env_runners.num_env_runners={n}", f"stop.num_env_steps_sampled_lifetime={steps}",
                "stop.env_runners.episode_return_mean=null", f"hydra.run.dir={out}/{n}",
                *(["algo.learners.num_gpus_per_learner=1"] if gpu else [])])
    m = json.loads((out / str(n) / "summary.json").read_text())["metrics"]
    rate = m["num_env_steps_sampled_lifetime"] / m["time_total_s"]
    base = base or rate
    print(f"runners {n:2d}: {rate:8.0f} env steps/s ({rate / base:4.2f}x) | per iteration: sampling "
          f"{m['timers/env_runner_sampling_timer']:.3f} s, learner update {m['timers/learner_update_timer']:.3f} s",
          flush=True)
