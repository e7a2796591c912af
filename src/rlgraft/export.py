"""Export trained modules as TorchScript files that need only torch, with a JSON of spaces and provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig

from rlgraft import checkpoints, discovery
from rlgraft.policy import Policy, deterministic_actions, load_policy
from rlgraft.schema import EvaluateConfig, to_evaluate_config


def export_checkpoint(cfg: DictConfig | EvaluateConfig, output_dir: str) -> dict[str, Any]:
    """`rlgraft export`: every module of the checkpoint (or `module_id`) -> {module: {model, meta}}."""
    c = to_evaluate_config(cfg)
    ck = discovery.given(c)
    info = checkpoints.read(ck)
    ids = [c.module_id] if c.module_id else list(info.modules)
    files = {}
    for mid in ids:
        files[mid] = export(load_policy(ck, mid), output_dir, {
            "checkpoint": ck, "ray_version": info.ray_version,
            "training_iteration": info.training_iteration,
            "env_steps": info.counters.get("num_env_steps_sampled_lifetime")})
    return files


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
            actions = deterministic_actions(self.module, self.module.forward_inference({"obs": obs}))
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
