"""Stable-Baselines3 PPO on Pendulum-v1 with RL Zoo's tuned hyperparameters, as a user would run it,
until the mean of the last 20 episodes' true returns is >= -300 (or 400k env steps).

The hyperparameters are read from the installed rl_zoo3 package's `hyperparams/ppo.yml`
(`Pendulum-v1` entry: 4 envs, n_steps 1024, gamma 0.9, gae_lambda 0.95, 10 epochs, lr 1e-3, use_sde
with sde_sample_freq 4, SB3's default [64,64] tanh MlpPolicy). Each env is wrapped in SB3's Monitor
(`make_vec_env` does it), whose per-episode `r` is the true, unnormalized return; the callback checks
the 20-episode mean after every vector step, so the run stops as soon as it is reached.

Usage: python bench/sb3_pendulum.py SEED     (needs the `bench` extra: see README)
Prints `T first_step <time.time()>`, `T solved <time.time()>` and `SOLVE <0|1> return <mean> steps <n>`.
"""

import importlib.util
import sys
import time
from collections import deque
from pathlib import Path

import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

TARGET, WINDOW, BUDGET = -300.0, 20, 400_000


def zoo_hyperparams(env_id: str = "Pendulum-v1") -> dict:
    """The zoo's entry, read from the installed package (found without importing rl_zoo3)."""
    spec = importlib.util.find_spec("rl_zoo3")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("rl_zoo3 is not installed: pip install -c constraints-cpu.txt -e '.[bench]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "hyperparams" / "ppo.yml"
    return dict(yaml.safe_load(path.read_text())[env_id])


class StopAtMeanReturn(BaseCallback):
    """Stop when the mean true return of the last WINDOW finished episodes (Monitor's `r`) >= TARGET."""

    def __init__(self) -> None:
        super().__init__()
        self.returns: deque[float] = deque(maxlen=WINDOW)
        self.first = None

    def _on_step(self) -> bool:
        if self.first is None:
            self.first = time.time()
            print(f"T first_step {self.first:.4f}", flush=True)
        for info in self.locals["infos"]:
            if "episode" in info:
                self.returns.append(float(info["episode"]["r"]))
        return not (len(self.returns) == WINDOW and sum(self.returns) / WINDOW >= TARGET)


seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
hp = zoo_hyperparams()
n_envs = int(hp.pop("n_envs", 1))
policy = hp.pop("policy")
for key in ("n_timesteps", "normalize", "env_wrapper", "frame_stack", "callback"):
    hp.pop(key, None)
env = make_vec_env("Pendulum-v1", n_envs=n_envs, seed=seed)
model = PPO(policy, env, seed=seed, device="cpu", verbose=0, **hp)
stop = StopAtMeanReturn()
model.learn(total_timesteps=BUDGET, callback=stop)
print(f"T solved {time.time():.4f}", flush=True)
mean = sum(stop.returns) / max(len(stop.returns), 1)
solved = len(stop.returns) == WINDOW and mean >= TARGET
print(f"SOLVE {int(solved)} return {mean:.1f} steps {model.num_timesteps}", flush=True)
