"""Importable parts for tests: env factories of both conventions and an RLlib callbacks class."""

from __future__ import annotations

import gymnasium as gym
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.callbacks.callbacks import RLlibCallback


def pendulum_from_config(config):
    """RLlib's factory convention: one env_config dict."""
    return gym.make("Pendulum-v1", **dict(config))


def pendulum_from_keywords(**kwargs):
    """The keyword convention (gym.make, PettingZoo's parallel_env)."""
    return gym.make("Pendulum-v1", **kwargs)


def not_an_env(config):
    return {"hello": 1}


def raising_factory(config):
    raise ValueError("the factory says no")


class CountEpisodes(RLlibCallback):
    def on_episode_end(self, *, episode, metrics_logger, **kwargs):
        metrics_logger.log_value("rlgraft_test_episodes", 1, reduce="sum")


class PPOModuleCopy(DefaultPPOTorchRLModule):
    """Another module class with PPO's parameters: same names and shapes, so only the class tells them apart."""


# gymnasium's `module:Id` form: importing this module registers the id (env.id=tests.parts:RlgraftPendulum-v0).
if "RlgraftPendulum-v0" not in gym.registry:
    gym.register("RlgraftPendulum-v0", entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv",
                 max_episode_steps=200)
