"""What a checkpoint in object storage costs a run: seconds per `save_to_path` of the default experiment's PPO
(Pendulum, [64,64]) to a local folder and to S3 on loopback (moto's server, started here), alternated, medians;
and the driver-side restore plan (`restore.dry_run`) from each.

    python bench/storage.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ and tests/ are not installed

from bench.common import machine  # noqa: E402
from tests.storage_servers import S3Server  # noqa: E402


def main(rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="rlgraft-bench-storage-"))
    server = S3Server().start(work / "moto.log")
    os.environ.update(server.env)
    server.client().create_bucket(Bucket="bench")
    try:
        import ray
        from ray.rllib.algorithms.ppo import PPOConfig

        import rlgraft

        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        algo = (PPOConfig().environment("Pendulum-v1").env_runners(num_env_runners=0)
                .training(train_batch_size_per_learner=512, minibatch_size=128, num_epochs=1)
                .rl_module(model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "relu"})).build_algo()
        algo.train()
        times: dict[str, list[float]] = {"local": [], "s3": []}
        for i in range(rounds):
            for where in times:
                target = str(work / f"ck{i}") if where == "local" else f"s3://bench/ck{i}"
                start = time.perf_counter()
                algo.save_to_path(target)
                times[where].append(time.perf_counter() - start)
            print(f"round {i + 1}: local {times['local'][-1]:.3f} s, s3 {times['s3'][-1]:.3f} s", flush=True)
        algo.stop()
        plan: dict[str, list[float]] = {"local": [], "s3": []}
        for i in range(rounds):
            for where in plan:
                source = str(work / f"ck{i}") if where == "local" else f"s3://bench/ck{i}"
                cfg = rlgraft.compose([f"+resume={source}", "restore.dry_run=true",
                                       "algo.rl_module.model_config.fcnet_hiddens=[64,64]"])
                start = time.perf_counter()
                rlgraft.run(cfg, output_dir=str(work / f"dry-{where}-{i}"), printer=lambda *_: None)
                plan[where].append(time.perf_counter() - start)
        local, s3 = statistics.median(times["local"]), statistics.median(times["s3"])
        plan_local, plan_s3 = statistics.median(plan["local"]), statistics.median(plan["s3"])
        size = sum(f.stat().st_size for f in (work / "ck0").rglob("*") if f.is_file())
        print(f"\n{machine()}; checkpoint {size / 1e3:.0f} kB; {rounds} rounds alternated")
        print(f"save_to_path: local {local:.3f} s, S3 on loopback {s3:.3f} s (median), ratio S3/local {s3 / local:.2f}")
        print(f"restore plan (dry run, driver): local {plan_local:.3f} s, S3 {plan_s3:.3f} s, "
              f"ratio {plan_s3 / plan_local:.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
