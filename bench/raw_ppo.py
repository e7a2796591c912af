"""The default rlgraft experiment written directly in RLlib + Tune, as a user would (the anchor).

Same hyperparameters as `conf/algo/ppo.yaml` + `experiment=pendulum`, same stop. One EnvRunner by
default (RLlib's default of two would never be placed on 2 CPUs); `python bench/raw_ppo.py R` for R
(0 samples in the trial, as rlgraft's fitting does on 2 CPUs).
"""

import os
import sys

# Tune's own ray.init() joins whatever address a `ray start` cluster left in /tmp/ray/ray_current_cluster
# (a killed test cluster's, measured: "Failed to connect to Ray cluster"); "local" starts this script's
# own runtime, as rlgraft does.
os.environ.setdefault("RAY_ADDRESS", "local")

from ray import tune
from ray.rllib.algorithms.ppo import PPOConfig

runners = int(sys.argv[1]) if len(sys.argv) > 1 else 1
config = (
    PPOConfig()
    .environment("Pendulum-v1")
    .env_runners(num_env_runners=runners, num_envs_per_env_runner=1)
    .training(lr=3e-4, gamma=0.99, lambda_=0.1, clip_param=0.3, vf_clip_param=10.0, entropy_coeff=0.0,
              vf_loss_coeff=1.0, kl_coeff=0.2, train_batch_size_per_learner=4000, minibatch_size=128,
              num_epochs=6)
    .rl_module(model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "relu"})
    .debugging(seed=0)
)
results = tune.Tuner(
    config.algo_class,
    param_space=config,
    run_config=tune.RunConfig(stop={"num_env_steps_sampled_lifetime": 8000},
                              checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True)),
).fit()
print("env steps", results[0].metrics["num_env_steps_sampled_lifetime"])
