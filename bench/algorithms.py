"""Beyond PPO: each algorithm's preset until its stop statistic, whole processes, seeds in turn.

    python bench/algorithms.py [SEEDS=3] [PRESET ...]   (default: sac_pendulum dqn_cartpole appo_cartpole)

Each preset is RLlib's tuned example for that algorithm and task, with its pass criterion as the stop (return
threshold within a step budget). Prints per run the wall time from process start to exit, the env steps, the
return reached and whether it solved; then the medians per preset. Writes bench-out/algorithms.json.
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

seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
presets = sys.argv[2:] or ["sac_pendulum", "dqn_cartpole", "appo_cartpole"]
out = Path(tempfile.mkdtemp(prefix="rlgraft-algorithms-"))
rows: dict[str, list[dict]] = {p: [] for p in presets}
for seed in range(seeds):
    for preset in presets:
        run_dir = out / f"{preset}-{seed}"
        start = time.perf_counter()
        run_logged([sys.executable, "-m", "experiments.run", f"experiment={preset}", f"seed={seed}",
                    f"hydra.run.dir={run_dir}"])
        took = time.perf_counter() - start
        s = json.loads((run_dir / "summary.json").read_text())
        goal = {k: v for k, v in stop_thresholds(s["config"]["stop"]).items() if "return" in k}
        (key, threshold), = goal.items()
        row = {"seed": seed, "wall_s": round(took, 1), "env_steps": s["env_steps"], "iterations": s["iterations"],
               "return": s["metrics"].get(key), "threshold": threshold,
               "solved": reached(s["metrics"], key, threshold)}
        rows[preset].append(row)
        print(f"seed {seed}: {preset:>14} {took:7.1f} s, env steps {row['env_steps']:7d}, "
              f"return {row['return']:8.1f} (goal {threshold}), solved {row['solved']}", flush=True)

print(machine())
result = {"machine": machine(), "runs": rows, "median": {}}
for preset, rs in rows.items():
    med = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "env_steps")}
    result["median"][preset] = med
    print(f"{preset:>14}: median {med['wall_s']:7.1f} s, {med['env_steps']:9.0f} env steps; "
          f"solved {sum(r['solved'] for r in rs)}/{len(rs)}")
(ROOT / "bench-out").mkdir(exist_ok=True)
(ROOT / "bench-out" / "algorithms.json").write_text(json.dumps(result, indent=2))
