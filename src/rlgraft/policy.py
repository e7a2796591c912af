"""Use a trained module without Ray: observations in, actions in the environment's units out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlgraft import checkpointable, checkpoints, discovery, storage
from rlgraft.errors import RlgraftError


def deterministic_actions(module: Any, out: dict[str, Any]) -> Any:
    """The actions of a module's `forward_inference` output: its own (DQN's argmax over Q-values), or the
    deterministic action of its distribution (PPO, SAC, BC)."""
    if "actions" in out:
        return out["actions"]
    return module.get_inference_action_dist_cls().from_logits(out["action_dist_inputs"]).to_deterministic().sample()


@dataclass
class Policy:
    """obs (one or a batch) -> action(s) in env units; deterministic unless `explore`."""

    module: Any
    module_id: str
    observation_space: gym.Space
    action_space: gym.Space
    normalize_actions: bool = True
    clip_actions: bool = False
    explore: bool = False

    def __call__(self, obs: Any) -> np.ndarray:
        import torch

        batch = np.asarray(obs, dtype=np.float32)
        single = batch.shape == self.observation_space.shape
        if single:
            batch = batch[None]
        with torch.no_grad():
            out = self.module.forward_inference({"obs": torch.from_numpy(batch)})
            if self.explore and "actions" in out:
                raise RlgraftError(f"module {self.module_id!r} acts without an action distribution (a Q-network "
                                   "picks the argmax), so explore=true has nothing to sample from; RLlib's DQN "
                                   "explores epsilon-greedily in its EnvRunners", fix="drop explore=true")
            actions = (deterministic_actions(self.module, out) if not self.explore else
                       self.module.get_inference_action_dist_cls().from_logits(out["action_dist_inputs"]).sample()
                       ).numpy()
        actions = self.to_env(actions)
        return actions[0] if single else actions

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """The EnvRunner's NormalizeAndClipActions step, so actions match what training used."""
        space = self.action_space
        if isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.floating):
            if self.normalize_actions and np.all(space.bounded_below) and np.all(space.bounded_above):
                actions = space.low + (actions + 1.0) * (space.high - space.low) / 2.0
                return np.clip(actions, space.low, space.high).astype(space.dtype)
            if self.clip_actions:
                return np.clip(actions, space.low, space.high).astype(space.dtype)
        return actions


def module_dir(checkpoint: str, module_id: str | None) -> tuple[Any, checkpoints.ModuleInfo]:
    info = checkpoints.read(checkpoint)
    if module_id is None:
        if len(info.modules) > 1:
            raise RlgraftError(f"the checkpoint holds several modules ({', '.join(info.modules)})",
                               fix="choose one with module_id=..., e.g. module_id=p1")
        module_id = next(iter(info.modules))
    if module_id not in info.modules:
        raise RlgraftError(f"module {module_id!r} is not in the checkpoint",
                           found=f"modules: {', '.join(info.modules)}", fix="use one of those")
    return storage.at(info.modules[module_id].path), info.modules[module_id]


def load_policy(path: str, module_id: str | None = None, *, explore: bool = False, base: str = ".") -> Policy:
    """A module from any checkpoint form PATH accepts, ready to act in env units."""
    ck, _ = discovery.resolve(path, base=str(Path(base).resolve()))
    mdir, info = module_dir(ck, module_id)
    params = checkpoints.run_params(ck)
    return Policy(
        module=checkpointable.load_module(mdir), module_id=info.module_id,
        observation_space=info.observation_space, action_space=info.action_space,
        normalize_actions=bool(params.get("normalize_actions", True)),
        clip_actions=bool(params.get("clip_actions", False)), explore=explore,
    )
