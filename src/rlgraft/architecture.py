"""What a module computes beyond its parameter names and shapes: its class, catalog, `model_config`
and the env-to-module connectors in front of it.

Weights of the same shapes compute another function when any of these differ (a relu network's
weights in a tanh network, a Gaussian head read without `free_log_std`, observations stacked in
another order), and RLlib loads them without a word. The restore plan compares these, as RLlib
builds them for both runs (the checkpoint's module constructor arguments and connector pipeline, the
new run's module built in the driver), refuses a difference by default, and lets the user accept a
named one (`restore.accept`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rlgraft import checkpoints, storage
from rlgraft.errors import RlgraftError, did_you_mean

# model_config keys that do not change what restored weights compute: initializers are overwritten by the
# restore; `max_seq_len` is how training batches are cut, not the network.
IGNORED_SUBSTRINGS = ("initializer",)
IGNORED_KEYS = {"max_seq_len"}
# Sizes: a difference shows in the parameter shapes, which `restore.params` compares for what it copies
# (the heads may be resized on purpose while only `encoder.*` is copied).
SIZE_KEYS = {"fcnet_hiddens", "head_fcnet_hiddens", "conv_filters", "lstm_cell_size"}
# Connector pieces and arguments that follow from single- vs multi-agent and the device, not from what the
# module sees: a single-agent policy grafted into agent p1 has AgentToModuleMapping in front of it.
STRUCTURAL_PIECES = {"AgentToModuleMapping"}
STRUCTURAL_KWARGS = {"input_observation_space", "input_action_space", "device", "pin_memory", "multi_agent",
                     "as_learner_connector", "rl_module_specs", "agent_to_module_mapping_fn", "agent_ids"}
# The keys besides `model_config.<name>`, with the option that sets each (for the message's fix).
FIXED_KEYS = {
    "algorithm": "algo.name",
    "module_class": "algo.rl_module.rl_module_spec.module_class",
    "catalog_class": "algo.rl_module.rl_module_spec.catalog_class",
    "env_to_module": "algo.env_runners.env_to_module_connector",
}
ABSENT = "absent"


def dotted(obj: Any) -> str:
    """A class (or the safe reader's placeholder for one) by its dotted name."""
    if obj is None:
        return "none"
    if isinstance(obj, str):
        return obj
    if isinstance(obj, type) and issubclass(obj, checkpoints.Opaque):
        return str(getattr(obj, "qualname", "?"))
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    return show(obj)


def show(value: Any) -> str:
    """A value as the user would write it: JSON for plain values, dotted names for classes."""
    if isinstance(value, type):
        return dotted(value)
    try:
        return json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def model_config_items(model_config: Any) -> dict[str, str]:
    """`model_config.<key>` -> value; RLlib's DefaultModelConfig fills what a side leaves out, so a
    default written out and one left out compare equal."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    given = (dataclasses.asdict(model_config) if dataclasses.is_dataclass(model_config)
             and not isinstance(model_config, type) else dict(model_config or {}))
    full = {f.name: getattr(DefaultModelConfig(), f.name) for f in dataclasses.fields(DefaultModelConfig)} | given
    return {f"model_config.{k}": show(v) for k, v in full.items()
            if k not in IGNORED_KEYS and not any(s in k for s in IGNORED_SUBSTRINGS)}


# The pieces RLlib appends to every env-to-module pipeline (`add_default_connectors_to_env_to_module_pipeline`).
DEFAULT_PIECES = ("AddObservationsFromEpisodesToBatch() -> AddTimeDimToBatchAndZeroPad() -> "
                  "AddStatesFromEpisodesToBatch() -> BatchIndividualItems() -> NumpyToTensor()")
DEFAULTS_SHOWN = "RLlib's default pieces"


def pipeline(pieces: Iterable[Any]) -> str:
    """The env-to-module pieces as `Piece(arg=value) -> ...`, without the structural ones; RLlib's own
    default tail is shown as one phrase."""
    shown = []
    for piece in pieces:
        cls, _, kwargs = piece if isinstance(piece, tuple) else (piece, (), {})
        name = dotted(cls).rpartition(".")[2]
        if name in STRUCTURAL_PIECES:
            continue
        args = ", ".join(f"{k}={show(v)}" for k, v in sorted((kwargs or {}).items()) if k not in STRUCTURAL_KWARGS)
        shown.append(f"{name}({args})")
    text = " -> ".join(shown)
    return text[: -len(DEFAULT_PIECES)] + DEFAULTS_SHOWN if text.endswith(DEFAULT_PIECES) else text


def checkpoint_pipeline(checkpoint: str | Path) -> str | None:
    """The env-to-module pipeline saved with an algorithm checkpoint (its constructor arguments list every
    piece with its keywords); None where the checkpoint has none."""
    path = storage.at(checkpoint) / checkpoints.CONNECTORS / "class_and_ctor_args.pkl"
    if not path.is_file():
        return None
    ctor = checkpoints.safe_load(path)
    kwargs = ctor.get("ctor_args_and_kwargs", ((), {}))[1] if isinstance(ctor, dict) else {}
    pieces = kwargs.get("connectors") if isinstance(kwargs, dict) else None
    return pipeline(pieces) if isinstance(pieces, list) else None


def checkpoint_algorithm(checkpoint: str | Path) -> str | None:
    """The algorithm class of a checkpoint, from the EnvRunner's saved config (read safely); an offline
    algorithm's checkpoint has only its evaluation EnvRunner."""
    path = next((p for p in (storage.at(checkpoint) / runner / "class_and_ctor_args.pkl"
                             for runner in ("env_runner", "eval_env_runner")) if p.is_file()), None)
    if path is None:
        return None
    try:
        ctor = checkpoints.safe_load(path)
        config = ctor["ctor_args_and_kwargs"][1]["config"]
        return dotted(config.state["algo_class"])
    except (RlgraftError, KeyError, TypeError, AttributeError, IndexError):
        return None


def of_module(module_class: Any, catalog_class: Any, model_config: Any, connectors: str | None,
              algorithm: str | None = None) -> dict[str, str]:
    """The comparable description of one module."""
    out = {"module_class": dotted(module_class), "catalog_class": dotted(catalog_class),
           **model_config_items(model_config)}
    if connectors is not None:
        out["env_to_module"] = connectors
    if algorithm is not None:
        out["algorithm"] = algorithm
    return out


def of_built(module: Any, connectors: str | None, algorithm: str | None = None) -> dict[str, str]:
    """A module built in the driver, described from the constructor arguments RLlib saves with it."""
    kwargs = module.get_ctor_args_and_kwargs()[1]
    return of_module(type(module), kwargs.get("catalog_class"), kwargs.get("model_config"), connectors, algorithm)


def differences(source: dict[str, str], target: dict[str, str], *, sizes: bool = True) -> list[tuple[str, str, str]]:
    """(key, checkpoint value, run value) for every key that differs; a key one side lacks is compared
    only where both sides can have it (a checkpoint without a saved pipeline says nothing of it)."""
    optional = {"env_to_module", "algorithm"}
    keys = sorted(k for k in set(source) | set(target) if k not in optional or (k in source and k in target))
    out = []
    for key in keys:
        if not sizes and key.removeprefix("model_config.") in SIZE_KEYS:
            continue
        a, b = source.get(key, ABSENT), target.get(key, ABSENT)
        if a != b:
            out.append((key, a, b))
    return out


def cli_value(shown: str) -> str:
    """A shown (JSON) value as a Hydra override value: strings bare, lists without spaces."""
    try:
        value = json.loads(shown)
    except ValueError:
        return shown
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":")).replace('"', "") if value is not None else "null"


def known_key(key: str) -> bool:
    return key in FIXED_KEYS or (key.startswith("model_config.") and len(key) > len("model_config."))


def option_of(key: str) -> str:
    """The rlgraft option that sets an architecture key."""
    return FIXED_KEYS.get(key) or f"algo.rl_module.{key}"


def check_accept(accept: list[str]) -> None:
    """Entries of `restore.accept` are architecture keys (`model_config.fcnet_activation`, `module_class`)."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    names = set(FIXED_KEYS) | {f"model_config.{f.name}" for f in dataclasses.fields(DefaultModelConfig)}
    for key in accept:
        if not isinstance(key, str) or not known_key(key):
            raise RlgraftError(
                f"restore.accept entry {key!r} is not an architecture key{did_you_mean(str(key), names)}",
                found="keys: model_config.<name> (e.g. model_config.fcnet_activation), " + ", ".join(FIXED_KEYS),
                fix="name the key the refusal named, e.g. 'restore.accept=[model_config.fcnet_activation]'")


def settle(found: dict[tuple[str, str], list[tuple[str, str, str]]], accept: list[str]) -> \
        dict[tuple[str, str], tuple[tuple[str, str, str], ...]]:
    """Split the differences per (target, source) into accepted ones (returned) and refused ones (an
    RlgraftError naming every key with both values). Every `restore.accept` entry must match a difference:
    one that no longer differs is stale, and keeping it would hide the next real difference."""
    check_accept(accept)
    refused = [(t, s, d) for (t, s), diffs in found.items() for d in diffs if d[0] not in accept]
    if refused:
        keys = sorted({d[0] for _, _, d in refused})
        shown = "; ".join(f"{s} -> {t}: {k} is {a} in the checkpoint, {b} in this run"
                          for t, s, (k, a, b) in refused[:8])
        first = {k: a for _, _, (k, a, _) in refused}
        like = [f"{option_of(k)}={cli_value(first[k])}" for k in keys if k.startswith("model_config.")][:3]
        raise RlgraftError(
            "the checkpoint's modules compute something else than this run's, although the parameter shapes "
            "match: RLlib would load the weights bit-exact into a different function",
            found=shown,
            fix=("build this run as the checkpoint was" + (f" ({' '.join(like)})" if like else
                                                           f" ({', '.join(option_of(k) for k in keys)})")
                 + ", or, if the difference is what you want, accept it by name: "
                 + f"'restore.accept=[{','.join(keys)}]'"),
        )
    used = {d[0] for diffs in found.values() for d in diffs}
    stale = [k for k in accept if k not in used]
    if stale:
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        names = {f"model_config.{f.name}" for f in dataclasses.fields(DefaultModelConfig)} | set(FIXED_KEYS)
        typo = next((did_you_mean(k, names | used) for k in stale if k not in names and did_you_mean(k, names | used)),
                    "")
        raise RlgraftError(f"restore.accept lists {', '.join(stale)}, but the checkpoint and this run do not differ "
                           f"there{typo}", fix=f"remove {', '.join(stale)} from restore.accept, or correct its name")
    return {pair: tuple(diffs) for pair, diffs in found.items() if diffs}
