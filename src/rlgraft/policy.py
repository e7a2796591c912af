"""Use a trained module without Ray: actions in the environment's units, and a Ray-free export."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlgraft import checkpoints
from rlgraft.errors import RlgraftError


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
            dist = self.module.get_inference_action_dist_cls().from_logits(out["action_dist_inputs"])
            actions = (dist.sample() if self.explore else dist.to_deterministic().sample()).numpy()
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


def module_dir(checkpoint: str, module_id: str | None) -> tuple[Path, checkpoints.ModuleInfo]:
    info = checkpoints.read(checkpoint)
    if module_id is None:
        if len(info.modules) > 1:
            raise RlgraftError(f"the checkpoint holds several modules ({', '.join(info.modules)})",
                               fix="choose one with module_id=..., e.g. module_id=p1")
        module_id = next(iter(info.modules))
    if module_id not in info.modules:
        raise RlgraftError(f"module {module_id!r} is not in the checkpoint",
                           found=f"modules: {', '.join(info.modules)}", fix="use one of those")
    return Path(info.modules[module_id].path), info.modules[module_id]


def load_policy(path: str, module_id: str | None = None, *, explore: bool = False, base: str = ".") -> Policy:
    """A module from any checkpoint form PATH accepts, ready to act in env units."""
    ck, _ = checkpoints.resolve(path, base=str(Path(base).resolve()))
    mdir, info = module_dir(ck, module_id)
    params = checkpoints.run_params(ck)
    return Policy(
        module=checkpoints.load_module(mdir), module_id=info.module_id,
        observation_space=info.observation_space, action_space=info.action_space,
        normalize_actions=bool(params.get("normalize_actions", True)),
        clip_actions=bool(params.get("clip_actions", False)), explore=explore,
    )


def export(policy: Policy, out_dir: str | Path, provenance: dict[str, Any]) -> dict[str, str]:
    """TorchScript file: batch of observations -> deterministic actions in env units. Needs only torch."""
    import torch

    class Deterministic(torch.nn.Module):
        low: torch.Tensor
        high: torch.Tensor

        def __init__(self, module: Any, space: gym.Space, normalize: bool, clip: bool):
            super().__init__()
            self.module = module
            self.box = isinstance(space, gym.spaces.Box)
            self.normalize, self.clip = normalize, clip
            bounds = (space.low, space.high) if isinstance(space, gym.spaces.Box) else (0.0, 0.0)
            self.register_buffer("low", torch.as_tensor(bounds[0], dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(bounds[1], dtype=torch.float32))

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            inputs = self.module.forward_inference({"obs": obs})["action_dist_inputs"]
            dist = self.module.get_inference_action_dist_cls().from_logits(inputs)
            actions = dist.to_deterministic().sample()
            if self.box and self.normalize:
                actions = self.low + (actions + 1.0) * (self.high - self.low) / 2.0
                actions = torch.clamp(actions, self.low, self.high)
            elif self.box and self.clip:
                actions = torch.clamp(actions, self.low, self.high)
            return actions

    wrapper = Deterministic(policy.module, policy.action_space, policy.normalize_actions,
                            policy.clip_actions).eval()
    example = torch.as_tensor(np.stack([policy.observation_space.sample() for _ in range(4)]),
                              dtype=torch.float32)
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_file = out / f"{policy.module_id}.pt"
    traced.save(str(model_file))
    meta = {
        "module_id": policy.module_id, "file": model_file.name, "format": "torchscript",
        "input": "float32 tensor [batch, *observation_space.shape]",
        "output": "deterministic actions in the environment's units",
        "observation_space": _space_json(policy.observation_space),
        "action_space": _space_json(policy.action_space),
        "normalize_actions": policy.normalize_actions, "clip_actions": policy.clip_actions,
        **provenance,
    }
    meta_file = out / f"{policy.module_id}.json"
    meta_file.write_text(json.dumps(meta, indent=2))
    return {"model": str(model_file), "meta": str(meta_file)}


def _space_json(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": np.asarray(space.low).tolist(), "high": np.asarray(space.high).tolist()}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    return {"type": type(space).__name__, "repr": str(space)}
