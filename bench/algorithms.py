"""Beyond PPO: each algorithm's preset until its stop statistic, whole processes, seeds in turn.

    python bench/algorithms.py [SEEDS=3] [PRESET ...]   (default: sac_pendulum dqn_cartpole appo_cartpole)

An offline preset (marwil_cartpole, bc_cartpole) reads the expert episodes `bench/offline_to_online.py` records
(bench-out/offline_to_online/record); its step count is the samples it trained on, not env steps.

SEEDS is a count (0..N-1) or a list such as 1,2 (one seed alone: 2,). Each run's figures go to
bench-out/algorithms/PRESET-SEED.json, and the medians are over every run found there, so seeds measured in two
invocations count together.

Each preset is RLlib's tuned example for that algorithm and task, with its pass criterion as the stop (return
threshold within a step budget). Prints per run the wall time from process start to exit, the env steps, the
return reached and whether it solved, and the stopped policy's mean return on 20 fresh deterministic episodes
(`rlgraft evaluate`, after the timing: RLlib's statistic is a short moving window); then the medians.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, run_logged

from rlgraft.algorithms import is_offline
from rlgraft.configs import preset_algo_options
from rlgraft.stopping import reached, stop_thresholds


def recorded_input(preset: str) -> list[str]:
    """`algo.offline_data.input_=[...]` for an offline preset: the episodes offline_to_online.py recorded."""
    found = preset_algo_options(preset)
    if not found or not is_offline(found[0]):
        return []
    record = ROOT / "bench-out" / "offline_to_online" / "record" / "record.json"
    if not record.is_file():
        raise SystemExit(f"{preset} trains on recorded episodes: run `python bench/offline_to_online.py` first")
    return [f"algo.offline_data.input_=[{','.join(json.loads(record.read_text())['input_'])}]"]


def evaluated(run_dir: Path, to: Path) -> float:
    """The run's last checkpoint on 20 deterministic episodes (seed 100), a fresh process."""
    run_logged([sys.executable, "-m", "experiments.evaluate", f"+checkpoint={run_dir}", "episodes=20", "seed=100",
                f"hydra.run.dir={to}"])
    result = json.loads((to / "evaluation.json").read_text())
    return next(iter(result["per_module"].values()))["mean"]


arg = sys.argv[1] if len(sys.argv) > 1 else "3"
seeds = [int(x) for x in arg.split(",") if x] if "," in arg else list(range(int(arg)))  # "2," is seed 2 alone
presets = sys.argv[2:] or ["sac_pendulum", "dqn_cartpole", "appo_cartpole"]
out = Path(tempfile.mkdtemp(prefix="rlgraft-algorithms-"))
saved = ROOT / "bench-out" / "algorithms"
saved.mkdir(parents=True, exist_ok=True)
for seed in seeds:
    for preset in presets:
        run_dir = out / f"{preset}-{seed}"
        start = time.perf_counter()
        run_logged([sys.executable, "-m", "experiments.run", f"experiment={preset}", f"seed={seed}",
                    *recorded_input(preset), f"hydra.run.dir={run_dir}"])
        took = time.perf_counter() - start
        s = json.loads((run_dir / "summary.json").read_text())
        goal = {k: v for k, v in stop_thresholds(s["config"]["stop"]).items() if "return" in k}
        (key, threshold), = goal.items()
        row = {"seed": seed, "wall_s": round(took, 1), "env_steps": s["env_steps"], "iterations": s["iterations"],
               "return": s["metrics"].get(key), "threshold": threshold,
               "solved": reached(s["metrics"], key, threshold), "run_dir": str(run_dir),
               "evaluated_20": evaluated(run_dir, out / f"{preset}-{seed}-evaluate")}
        (saved / f"{preset}-{seed}.json").write_text(json.dumps({**row, "machine": machine()}))
        print(f"seed {seed}: {preset:>14} {took:7.1f} s, env steps {row['env_steps']:7d}, "
              f"return {row['return']:8.1f} (goal {threshold}), solved {row['solved']}; "
              f"evaluated {row['evaluated_20']:.1f}", flush=True)

print(machine())
rows = {p: [json.loads(f.read_text()) for f in sorted(saved.glob(f"{p}-*.json"))] for p in presets}
result = {"machine": machine(), "runs": rows, "median": {}}
for preset, rs in rows.items():
    med = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "env_steps")}
    result["median"][preset] = med
    print(f"{preset:>14}: {len(rs)} runs (seeds {[r['seed'] for r in rs]}), median {med['wall_s']:7.1f} s, "
          f"{med['env_steps']:9.0f} env steps; solved {sum(r['solved'] for r in rs)}/{len(rs)}; evaluated "
          f"{[round(r['evaluated_20'], 1) if 'evaluated_20' in r else None for r in rs]}")
(saved / "summary.json").write_text(json.dumps(result, indent=2))
