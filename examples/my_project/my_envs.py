"""A user's own environment: a corridor the agent walks to its end (RLlib's env class convention:
the constructor takes the env_config dict, which rlgraft fills from `env.kwargs`)."""

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    def __init__(self, config: dict | None = None):
        self.length = int((config or {}).get("length", 5))
        self.observation_space = gym.spaces.Box(0.0, float(self.length), (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)  # 0: left, 1: right
        self.pos = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return np.array([self.pos], np.float32), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if action == 1 else -1))
        done = self.pos >= self.length
        return np.array([self.pos], np.float32), 1.0 if done else -0.1, done, False, {}
