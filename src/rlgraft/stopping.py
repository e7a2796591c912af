"""Stop keys: Tune's stop dict from the config, checked before Ray starts, and the rule for `*` keys."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Collection
from typing import Any

from rlgraft.errors import RlgraftError, did_you_mean

# Result keys every RLlib new-stack run reports; a stop key close to one of these but not equal is a typo.
KNOWN_RESULT_KEYS = {
    "num_env_steps_sampled_lifetime", "num_agent_steps_sampled_lifetime", "training_iteration",
    "time_total_s", "time_this_iter_s", "timesteps_total", "iterations_since_restore",
    "env_runners/episode_return_mean", "env_runners/episode_return_max",
    "env_runners/episode_return_min", "env_runners/episode_len_mean",
    "env_runners/num_env_steps_sampled_lifetime", "env_runners/num_episodes_lifetime",
    "learners/__all_modules__/num_env_steps_trained_lifetime",
}
# Per-agent and per-module keys end in an id, so they are checked on live results only; so do the
# windowed means of rlgraft.episodes.LastEpisodes (`env_runners/episode_return_mean_last_20`).
PER_AGENT_PREFIXES = ("env_runners/agent_", "env_runners/module_", "env_runners/episode_return_mean_last_")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts with '/' (Tune's result key style)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def stop_thresholds(stop: dict[str, Any]) -> dict[str, Any]:
    """Flattened stop keys; null turns a key off (e.g. one a preset inherits)."""
    return {k: v for k, v in flatten(stop).items() if v is not None}


def check_stop_keys(stop: dict[str, float]) -> None:
    """Catch near-miss typos before Ray starts; unknown custom keys are checked on live results."""
    for key in stop:
        check_result_key(key, f"stop key `{key}`",
                         "correct it, e.g. stop.num_env_steps_sampled_lifetime=8000 or "
                         "+stop.env_runners.episode_return_mean=-300")


def check_result_key(key: str, what: str, fix: str) -> None:
    """A result key that a config names (a stop key, `metric`, `checkpointing.score_attribute`): a near-miss
    of a key every run reports is a typo, refused before Ray starts; other keys are checked on live results
    (`tuning.StopGuard`)."""
    inner = key.removeprefix("evaluation/")  # evaluation results carry the env_runners/ keys under evaluation/
    if inner in KNOWN_RESULT_KEYS or inner.startswith(PER_AGENT_PREFIXES):
        return
    hint = did_you_mean(key, KNOWN_RESULT_KEYS | {f"evaluation/{k}" for k in KNOWN_RESULT_KEYS
                                                   if k.startswith("env_runners/")})
    if hint:
        raise RlgraftError(f"{what} is not a result key{hint}", fix=fix)


def named_result_keys(metric: str, score_attribute: str | None) -> dict[str, str]:
    """Result keys a run names besides its stop keys, by the option that names them; checked as stop keys
    are (near-miss typos before Ray, a key the results never carry after the first finished episodes)."""
    out = {metric: "metric"}
    if score_attribute:
        out.setdefault(score_attribute, "checkpointing.score_attribute")
    for key, option in out.items():
        check_result_key(key, f"{option}={key}", f"correct {option}, e.g. {option}=env_runners/episode_return_mean")
    return out


def check_ids(keys: dict[str, str], modules: Collection[str], agents: Collection[object]) -> None:
    """Per-module and per-agent result keys (`env_runners/module_episode_returns_mean/p0`) name a module or
    agent of this run: a stop on `p9` would otherwise fail only after the first finished episodes. `keys`:
    result key -> what names it (for the message)."""
    for key, what in keys.items():
        parts = key.removeprefix("evaluation/").split("/")
        if len(parts) != 3 or parts[0] != "env_runners" or any(c in parts[2] for c in "*?["):
            continue
        kind = "module" if parts[1].startswith("module_") else "agent" if parts[1].startswith("agent_") else None
        known = sorted(map(str, modules if kind == "module" else agents)) if kind else []
        if kind and parts[2] not in known:
            raise RlgraftError(f"{what} names {kind} {parts[2]!r}, which this run does not have"
                               f"{did_you_mean(parts[2], set(known))}",
                               found=f"this run's {kind}s: {', '.join(known)}",
                               fix=f"use one of those: {'/'.join(parts[:2])}/{known[0] if known else 'ID'}")


def matching(keys: Collection[str], key: str) -> list[str]:
    """The result keys a stop key names: itself, or every match of a `*` pattern."""
    if "*" not in key:
        return [key] if key in keys else []
    return [k for k in keys if fnmatch.fnmatchcase(k, key)]


def reached(flat: dict[str, Any], key: str, limit: float, seen: set[str] | None = None) -> bool:
    """Every value the key names is a number at or above the limit (and there is at least one).

    `seen`: keys of earlier results too, so an agent missing from this result (no episode ended)
    counts as not reached rather than being left out of "every".
    """
    values = [flat.get(k) for k in matching(set(flat) | (seen or set()), key)]
    return bool(values) and all(isinstance(v, int | float) and not math.isnan(v) and v >= limit
                                for v in values)
