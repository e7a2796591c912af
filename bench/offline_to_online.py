"""Offline to online, from config: a PPO expert on CartPole, its episodes recorded (`rlgraft record`), BC
clones trained on them, and PPO fine-tuned from each clone beside PPO from scratch (same seeds).

    python bench/offline_to_online.py [SEEDS=3] [FINE_TUNE_ITERS=5] [OUT=bench-out/offline_to_online]

Prints the expert's, each clone's and each run's first iterations' returns, and writes a plot
(docs/offline_to_online.png). One Ray runtime for the whole script, as the tests share one.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def returns_per_iteration(run: dict, key: str) -> list[float]:
    trial = Path(run["checkpoint"]).parent
    with (trial / "progress.csv").open() as f:
        return [float(r[key]) if r.get(key) not in (None, "") else float("nan") for r in csv.DictReader(f)]


def main() -> None:
    import ray
    from common import machine

    import rlgraft
    from rlgraft import evaluation, recording, runtime, schema

    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    iters = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    out = Path(sys.argv[3] if len(sys.argv) > 3 else ROOT / "bench-out" / "offline_to_online").resolve()
    out.mkdir(parents=True, exist_ok=True)
    runtime.quiet()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    quiet = {"printer": lambda *_: None, "skip_finished": True}  # a second call reuses finished runs
    start = time.perf_counter()
    expert = rlgraft.run(rlgraft.compose(["experiment=cartpole", "seed=0"]), output_dir=str(out / "expert"), **quiet)
    print(f"expert: {expert['iterations']} iterations, {expert['env_steps']} env steps, "
          f"{expert['wall_s']:.0f} s, "
          f"return {expert['metrics'].get('env_runners/episode_return_mean'):.1f}", flush=True)
    done = out / "record" / "record.json"
    rec = json.loads(done.read_text()) if done.is_file() else recording.record_checkpoint(
        schema.RecordConfig(checkpoint=expert["checkpoint"], episodes=100), str(out / "record"))
    print(f"recorded: {rec['episodes']} episodes, {rec['env_steps']} env steps, return {rec['return']['mean']:.1f}",
          flush=True)
    clone, fine, scratch = {}, {}, {}
    key = "env_runners/episode_return_mean"
    for seed in range(seeds):
        bc = rlgraft.run(rlgraft.compose(["experiment=bc_cartpole", f"algo.offline_data.input_={rec['input_']}",
                                          f"seed={seed}", "stop.training_iteration=20"]),
                         output_dir=str(out / f"bc-{seed}"), **quiet)
        ev = evaluation.evaluate(bc["checkpoint"], schema.EnvConfig(id="CartPole-v1"), episodes=20, seed=100 + seed)
        clone[seed] = ev["per_module"]["default_policy"]["mean"]
        base = ["experiment=cartpole", f"seed={seed}", f"+stop.training_iteration={iters}",
                "stop.env_runners.episode_return_mean=null"]
        ft = rlgraft.run(rlgraft.compose([*base, f"+resume={bc['checkpoint']}",
                                          "restore.modules={default_policy:default_policy}"]),
                         output_dir=str(out / f"fine-{seed}"), **quiet)
        sc = rlgraft.run(rlgraft.compose(base), output_dir=str(out / f"scratch-{seed}"), **quiet)
        fine[seed], scratch[seed] = returns_per_iteration(ft, key), returns_per_iteration(sc, key)
        print(f"seed {seed}: clone {clone[seed]:.1f} (20 deterministic episodes); PPO from the clone "
              f"{[round(x, 1) for x in fine[seed]]}; PPO from scratch {[round(x, 1) for x in scratch[seed]]}",
              flush=True)
    med = {name: [statistics.median(r[s][i] for s in r) for i in range(iters)] for name, r in
           (("fine", fine), ("scratch", scratch))}
    result = {"machine": machine(), "expert_return": expert["metrics"].get(key), "expert_steps": expert["env_steps"],
              "recorded_return": rec["return"]["mean"], "clone_returns": clone,
              "clone_median": statistics.median(clone.values()), "fine_tune": fine, "scratch": scratch,
              "median_per_iteration": med, "wall_s": round(time.perf_counter() - start, 1)}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"median clone return {result['clone_median']:.1f} vs expert (recorded) {rec['return']['mean']:.1f}")
    print(f"median per iteration: fine-tune {[round(x, 1) for x in med['fine']]}, "
          f"scratch {[round(x, 1) for x in med['scratch']]}")
    plot(result, ROOT / "docs" / "offline_to_online.png", iters)


def plot(result: dict, path: Path, iters: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [4000 * (i + 1) for i in range(iters)]  # experiment=cartpole: 4000-step iterations
    for name, runs, color in (("PPO fine-tuned from the BC clone", result["fine_tune"], "C0"),
                              ("PPO from scratch", result["scratch"], "C1")):
        for i, r in enumerate(runs.values()):
            ax.plot(steps, r, color=color, alpha=0.35, label=None if i else name)
        ax.plot(steps, result["median_per_iteration"]["fine" if "clone" in name else "scratch"], color=color, lw=2)
    ax.axhline(result["recorded_return"], color="k", ls="--", lw=1, label="expert (recorded episodes)")
    ax.axhline(result["clone_median"], color="C0", ls=":", lw=1, label="BC clone (median, evaluated)")
    ax.set_xlabel("env steps of PPO")
    ax.set_ylabel("episode return (mean of the iteration)")
    ax.set_title("CartPole-v1: BC clone fine-tuned by PPO vs PPO from scratch")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
