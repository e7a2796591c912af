"""RLlib's tuned example `rllib/tuned_examples/ppo/pendulum_ppo.py`, adapted to 2 CPUs: one EnvRunner
instead of two (two plus the driver are never placed). Stops at mean return -300 or 400k env steps.

Usage: python bench/anchor_pendulum.py SEED
"""

import os
import sys

# Tune's own ray.init() would join a stale `ray start` address (/tmp/ray/ray_current_cluster); as raw_ppo.py.
os.environ.setdefault("RAY_ADDRESS", "local")

from ray import tune
from ray.rllib.algorithms.ppo import PPOConfig

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
config = (
    PPOConfig()
    .env_runners(num_env_runners=1, num_envs_per_env_runner=10)
    .environment("Pendulum-v1")
    .training(lr=0.0003, lambda_=0.1, vf_clip_param=10.0, num_epochs=6)
    .rl_module(model_config={"fcnet_activation": "relu"})
    .debugging(seed=seed)
)
result = tune.Tuner(
    config.algo_class, param_space=config,
    run_config=tune.RunConfig(stop={"num_env_steps_sampled_lifetime": 400_000,
                                    "env_runners/episode_return_mean": -300.0}),
).fit()[0]
ret = result.metrics["env_runners"]["episode_return_mean"]
print(f"SOLVE {int(ret >= -300)} return {ret:.1f} steps {result.metrics['num_env_steps_sampled_lifetime']}")
