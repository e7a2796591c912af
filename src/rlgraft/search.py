"""The Tune search space from `tune.search`: what is searched, the param_space, trial counts, and
the overrides that pin one trial's values for its resume command."""

from __future__ import annotations

import json
import math
from typing import Any

from rlgraft import algo
from rlgraft.errors import RlgraftError
from rlgraft.schema import Config

# YAML form -> (Tune sampler function, whether it takes one list or positional bounds).
SAMPLERS = {"grid": ("grid_search", True), "choice": ("choice", True), "uniform": ("uniform", False),
            "loguniform": ("loguniform", False), "randint": ("randint", False), "quniform": ("quniform", False)}


def sampler(spec: dict[str, Any], where: str) -> Any:
    """`{grid: [...]}` style YAML -> a Tune search-space object."""
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in SAMPLERS:
        raise RlgraftError(f"search entry `{where}` is {spec!r}",
                           fix=f"write it as one of {', '.join(f'{{{k}: ...}}' for k in SAMPLERS)}")
    from ray import tune

    kind, values = next(iter(spec.items()))
    name, as_list = SAMPLERS[kind]
    fn = getattr(tune, name)
    return fn(list(values)) if as_list else fn(*values)


def searched(cfg: Config) -> list[tuple[str, str, Any]]:
    """Every searched option as (section, option, spec); model_config entries as `model_config.<key>`."""
    out = []
    for section, entries in cfg.tune.search.items():
        for key, spec in entries.items():
            if section == "rl_module" and key == "model_config":
                out += [(section, f"{key}.{k}", v) for k, v in spec.items()]
            else:
                out.append((section, key, spec))
    return out


def param_space(config: Any, cfg: Config) -> Any:
    """The AlgorithmConfig itself, or its dict with Tune search objects where `tune.search` says."""
    if not cfg.tune.search:
        return config
    for section, entries in cfg.tune.search.items():
        if section not in algo.SECTIONS or not isinstance(entries, dict):
            raise RlgraftError(f"tune.search.{section} is not an algo section",
                               fix=f"use one of {', '.join(algo.SECTIONS)}, e.g. "
                                   "tune.search.training.lr={grid:[1e-3,3e-4]}")
        # A seed is searched like any option (`tune.search.debugging.seed={grid:[0,1,2]}`): Tune sets
        # each trial's, so what `seed=` would otherwise manage is the search's to set.
        algo.check_section(type(config), section, {k: None for k in entries if (section, k) != ("debugging", "seed")})
    space = config.to_dict()
    for section, key, spec in searched(cfg):
        where = f"tune.search.{section}.{key}"
        if key.startswith("model_config."):
            name = key.removeprefix("model_config.")
            algo.check_section(type(config), section, {"model_config": {name: None}})
            space["_model_config"] = {**(space.get("_model_config") or {}), name: sampler(spec, where)}
        elif key in space:
            space[key] = sampler(spec, where)
        else:
            raise RlgraftError(f"{where} cannot be searched by Tune (no config field {key!r})",
                               fix="search another option or set it per job with Hydra -m")
    return space


def pinned_search(cfg: Config, trial_config: dict[str, Any]) -> list[str]:
    """Overrides that fix a searched trial's own values and turn the search off, so its resume
    command continues that trial instead of re-creating the whole Tune search."""
    if not cfg.tune.search and cfg.tune.num_samples == 1:
        return []
    out = []
    for section, key, _ in searched(cfg):
        values, name = ((trial_config.get("_model_config") or {}, key.removeprefix("model_config."))
                        if key.startswith("model_config.") else (trial_config, key))
        if name in values:
            out.append(f"++algo.{section}.{key}={json.dumps(values[name])}")
    # `tune.search={}` would merge into the preset's search; deleting each section replaces it.
    return [*out, *(f"~tune.search.{section}" for section in cfg.tune.search), "tune.num_samples=1"]


def num_trials(cfg: Config) -> int:
    grids = [len(spec["grid"]) for _, _, spec in searched(cfg) if isinstance(spec, dict) and "grid" in spec]
    return math.prod(grids) * cfg.tune.num_samples
