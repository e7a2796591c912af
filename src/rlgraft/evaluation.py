"""`evaluate`: run episodes with restored modules on the CPU, without starting Ray."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from rlgraft import checkpoints, discovery, envs
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
    """Rebuild the run's env config from summary.json / params.json saved with the run."""
    params = checkpoints.run_params(checkpoint)
    name = str(params.get("env", ""))
    for parent in Path(checkpoint).parents:
        summary = parent / "summary.json"
        if summary.is_file():
            env = json.loads(summary.read_text()).get("config", {}).get("env")
            if env:
                return EnvConfig(**env)
    if name.startswith("rlgraft/"):
        parts = name.split("/")
        if len(parts) == 3 and parts[2].endswith("agents"):
            return EnvConfig(id=parts[1], multi_agent=True, num_agents=int(parts[2][:-6]))
        return EnvConfig(id=parts[1])
    if name:
        envs.check_env_id(name)
        return EnvConfig(id=name)
    raise RlgraftError(f"cannot tell which environment `{checkpoint}` was trained on",
                       found="no summary.json above it and no env in params.json",
                       fix="pass env=... (e.g. env=pendulum) to evaluate")


def evaluate(checkpoint: str, env: EnvConfig, episodes: int = 10, explore: bool = False, seed: int = 0,
             render_to: str | None = None) -> dict[str, Any]:
    """Mean, std, min, max return per agent and per module over `episodes` episodes."""
    info = checkpoints.read(checkpoint)
    envs.check_env_id(env.id)
    mapping = envs.PolicyMapping(env.policy_mapping)
    needed = envs.policies(env)
    missing = [m for m in needed if m not in info.modules]
    if missing:
        raise RlgraftError(f"the env needs modules {', '.join(missing)} that the checkpoint lacks",
                           found=f"checkpoint modules: {', '.join(info.modules)}",
                           fix="evaluate with the env the checkpoint was trained on")
    policies: dict[str, Policy] = {m: load_policy(checkpoint, m, explore=explore) for m in needed}
    agents = envs.agent_ids(env)
    label = {a: "single" if a is None else str(a) for a in agents}
    returns: dict[str, list[float]] = {label[a]: [] for a in agents}
    frames: list[np.ndarray] = []
    for ep in range(episodes):
        render = render_to is not None and ep == 0
        sims = [_make(env, render) for _ in agents]
        obs = [s.reset(seed=seed + ep * len(agents) + i)[0] for i, s in enumerate(sims)]
        totals = [0.0] * len(sims)
        done = [False] * len(sims)
        while not all(done):
            for i, sim in enumerate(sims):
                if done[i]:
                    continue
                module = envs.SINGLE_AGENT_MODULE if agents[i] is None else mapping(agents[i])
                obs[i], reward, term, trunc, _ = sim.step(policies[module](obs[i]))
                totals[i] += float(reward)
                done[i] = term or trunc
            if render:
                frames.append(np.concatenate([s.render() for s in sims], axis=1))
        for a, total in zip(agents, totals, strict=True):
            returns[label[a]].append(total)
        for s in sims:
            s.close()
    per_agent = {a: _stats(r) for a, r in returns.items()}
    per_module: dict[str, list[float]] = {}
    for a, r in returns.items():
        module = envs.SINGLE_AGENT_MODULE if a == "single" else mapping(int(a))
        per_module.setdefault(module, []).extend(r)
    result: dict[str, Any] = {"checkpoint": checkpoint, "episodes": episodes, "explore": explore,
                              "per_agent": per_agent,
                              "per_module": {m: _stats(r) for m, r in per_module.items()}}
    if render_to and frames:
        import imageio.v2 as imageio

        imageio.mimsave(render_to, list(frames[::2]), duration=0.04, loop=0)  # type: ignore[arg-type]
        result["render"] = {"file": render_to, "frames": len(frames[::2])}
    return result


def _make(env: EnvConfig, render: bool) -> Any:
    import gymnasium as gym

    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame renders offscreen; no sound card needed
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    kwargs = dict(env.kwargs)
    if render:
        kwargs["render_mode"] = "rgb_array"
    return gym.make(env.id, **kwargs)


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


def _stats(r: list[float]) -> dict[str, float]:
    a = np.asarray(r)
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max()),
            "n": int(a.size)}
