"""The naive 4-job sweep: each job starts Ray, runs its Tuner, and shuts Ray down (same configs as
bench/sweep.py's rlgraft multirun: 1 EnvRunner, 1000-step batches, 2 epochs, 2000 env steps)."""

import tempfile

import ray
from ray import tune
from ray.rllib.algorithms.ppo import PPOConfig

storage = tempfile.mkdtemp(prefix="naive-sweep-")
for seed in range(4):
    ray.init(address="local")  # not a stale /tmp/ray/ray_current_cluster
    config = (
        PPOConfig()
        .environment("Pendulum-v1")
        .env_runners(num_env_runners=1)
        .training(lr=3e-4, gamma=0.99, lambda_=0.1, clip_param=0.3, vf_clip_param=10.0,
                  train_batch_size_per_learner=1000, minibatch_size=128, num_epochs=2)
        .rl_module(model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "relu"})
        .debugging(seed=seed)
    )
    tune.Tuner(config.algo_class, param_space=config,
               run_config=tune.RunConfig(storage_path=storage, name=f"job{seed}",
                                         stop={"num_env_steps_sampled_lifetime": 2000})).fit()
    ray.shutdown()
