"""Plain functions behind the inspect/evaluate/export entry points (tests call these directly)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlgraft import checkpoints, evaluation, policy
from rlgraft.errors import RlgraftError
from rlgraft.schema import EvaluateConfig


def _typed(cfg: DictConfig | EvaluateConfig) -> EvaluateConfig:
    if isinstance(cfg, EvaluateConfig):
        return cfg
    obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EvaluateConfig), cfg))
    assert isinstance(obj, EvaluateConfig)
    return obj


def _checkpoint(c: EvaluateConfig) -> str:
    if not c.checkpoint:
        raise RlgraftError("no checkpoint given", fix="add +checkpoint=PATH")
    ck, _ = checkpoints.resolve(c.checkpoint, base=os.getcwd(), pick=c.pick.value, metric=c.metric)
    return ck


def evaluate(cfg: DictConfig | EvaluateConfig, output_dir: str) -> dict[str, Any]:
    c = _typed(cfg)
    ck = _checkpoint(c)
    env = c.env or evaluation.env_of(ck)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = evaluation.evaluate(ck, env, episodes=c.episodes, explore=c.explore, seed=c.seed,
                                 render_to=str(out / "episode.gif") if c.render else None)
    (out / "evaluation.json").write_text(json.dumps(result, indent=2))
    return result


def export(cfg: DictConfig | EvaluateConfig, output_dir: str) -> dict[str, Any]:
    c = _typed(cfg)
    ck = _checkpoint(c)
    info = checkpoints.read(ck)
    ids = [c.module_id] if c.module_id else list(info.modules)
    files = {}
    for mid in ids:
        pol = policy.load_policy(ck, mid)
        files[mid] = policy.export(pol, output_dir, {
            "checkpoint": ck, "ray_version": info.ray_version,
            "training_iteration": info.training_iteration,
            "env_steps": info.counters.get("num_env_steps_sampled_lifetime")})
    return files
