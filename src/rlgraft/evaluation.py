"""`evaluate`: run episodes with restored modules on the CPU, without starting Ray."""

from __future__ import annotations

import json
import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig

from rlgraft import checkpoints, discovery, envs, storage
from rlgraft.errors import RlgraftError
from rlgraft.policy import Policy, load_policy
from rlgraft.schema import EnvConfig, EvaluateConfig, to_evaluate_config


def evaluate_checkpoint(cfg: DictConfig | EvaluateConfig, output_dir: str) -> dict[str, Any]:
    """`rlgraft evaluate`: evaluate the given checkpoint and write evaluation.json (and episode.gif)."""
    c = to_evaluate_config(cfg)
    ck = discovery.given(c)
    env = c.env or env_of(ck)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate(ck, env, episodes=c.episodes, explore=c.explore, seed=c.seed,
                      render_to=str(out / "episode.gif") if c.render else None)
    (out / "evaluation.json").write_text(json.dumps(result, indent=2))
    return result


def env_of(checkpoint: str) -> EnvConfig:
    """The run's env config, from the summary.json saved with the run, or the env in params.json."""
    for parent in storage.at(checkpoint).parents:  # a checkpoint in object storage has params.json only
        summary = parent / "summary.json"
        if summary.is_file():
            env = json.loads(summary.read_text()).get("config", {}).get("env")
            if env:
                known = {f.name for f in fields(EnvConfig)}
                if env.get("multi_agent") is False:  # written before env.num_agents meant copies
                    env = {**env, "num_agents": None}
                return EnvConfig(**{k: v for k, v in env.items() if k in known})
    name = str(checkpoints.run_params(checkpoint).get("env", ""))
    if name and name in gym.registry:
        return EnvConfig(id=name)
    raise RlgraftError(f"cannot tell which environment `{checkpoint}` was trained on",
                       found="no summary.json above it and no gymnasium id in params.json",
                       fix="pass the env, e.g. +env.id=Pendulum-v1 (and +env.kwargs=..., +env.num_agents=...)")


def evaluate(checkpoint: str, env: EnvConfig, episodes: int = 10, explore: bool = False, seed: int = 0,
             render_to: str | None = None) -> dict[str, Any]:
    """Mean, std, min, max return per agent and per module over `episodes` episodes."""
    info = checkpoints.read(checkpoint)
    resolved = envs.resolve(env)
    needed = list(resolved.modules())
    missing = [m for m in needed if m not in info.modules]
    if missing:
        raise RlgraftError(f"the env needs modules {', '.join(missing)} that the checkpoint lacks",
                           found=f"checkpoint modules: {', '.join(info.modules)}",
                           fix="evaluate with the env the checkpoint was trained on")
    policies: dict[str, Policy] = {m: load_policy(checkpoint, m, explore=explore) for m in needed}
    label = {a: "single" if a is None else str(a) for a in resolved.agents}
    returns: dict[str, list[float]] = {label[a]: [] for a in resolved.agents}
    frames: list[np.ndarray] = []
    for ep in range(episodes):
        render = render_to is not None and ep == 0
        totals = _episode(env, resolved, policies, seed + ep, frames if render else None)
        for agent, total in totals.items():
            returns[label[agent]].append(total)
    per_module: dict[str, list[float]] = {}
    for agent in resolved.agents:
        per_module.setdefault(resolved.module_of(agent), []).extend(returns[label[agent]])
    result: dict[str, Any] = {"checkpoint": checkpoint, "episodes": episodes, "explore": explore,
                              "per_agent": {a: stats(r) for a, r in returns.items() if r},
                              "per_module": {m: stats(r) for m, r in per_module.items() if r}}
    if render_to and frames:
        import imageio.v2 as imageio

        imageio.mimsave(render_to, list(frames[::2]), duration=0.04, loop=0)  # type: ignore[arg-type]
        result["render"] = {"file": render_to, "frames": len(frames[::2])}
    return result


def _episode(env: EnvConfig, resolved: envs.ResolvedEnv, policies: dict[str, Policy], seed: int,
             frames: list[np.ndarray] | None) -> dict[Any, float]:
    """One episode; a single-agent env is stepped directly, a multi-agent one through its dicts."""
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame renders offscreen; no sound card needed
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    render_kwargs = {"render_mode": "rgb_array"} if frames is not None and resolved.agents == [None] else {}
    sim = envs.instantiate(replace(env, kwargs={**env.kwargs, **render_kwargs}) if render_kwargs else env)
    totals: dict[Any, float] = dict.fromkeys(resolved.agents, 0.0)
    try:
        if not resolved.multi_agent:
            obs, _ = sim.reset(seed=seed)
            done = False
            while not done:
                obs, reward, term, trunc, _ = sim.step(policies[envs.SINGLE_AGENT_MODULE](obs))
                totals[None] += float(reward)
                done = term or trunc
                if frames is not None:
                    frames.append(sim.render())
            return totals
        obs, _ = sim.reset(seed=seed)
        while obs:
            actions = {a: policies[resolved.module_of(a)](o) for a, o in obs.items()}
            obs, rewards, terms, truncs, _ = sim.step(actions)
            for agent, reward in rewards.items():
                totals[agent] = totals.get(agent, 0.0) + float(reward)
            if terms.get("__all__") or truncs.get("__all__"):
                break
            obs = {a: o for a, o in obs.items() if not (terms.get(a) or truncs.get(a))}
        return totals
    finally:
        sim.close()


def render_table(result: dict[str, Any]) -> str:
    lines = [f"{result['episodes']} episodes, {'sampled' if result['explore'] else 'deterministic'} actions, "
             f"{result['checkpoint']}", f"{'':18}{'mean':>10}{'std':>9}{'min':>10}{'max':>10}"]
    for kind in ("per_agent", "per_module"):
        for name, s in result[kind].items():
            who = f"agent {name}" if kind == "per_agent" else f"module {name}"
            lines.append(f"{who:18}{s['mean']:10.1f}{s['std']:9.1f}{s['min']:10.1f}{s['max']:10.1f}")
    if "render" in result:
        lines.append(f"render: {result['render']['file']} ({result['render']['frames']} frames)")
    return "\n".join(lines)


def stats(r: list[float]) -> dict[str, float]:
    """Mean, std, min, max and count of returns."""
    a = np.asarray(r)
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max()),
            "n": int(a.size)}
