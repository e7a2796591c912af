"""Read an RLlib checkpoint without running code from it: metadata, modules, counters, digests.

Metadata and module weights are read with a restricted unpickler that builds numpy arrays,
gymnasium spaces and plain containers, and stands in a harmless placeholder for any other class, so
inspecting a checkpoint runs no code from it. Restoring (inside Ray, `checkpointable`) does unpickle
fully, as RLlib does: restore only from checkpoints you trust.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlgraft import storage
from rlgraft.errors import RlgraftError

ALGO_METADATA = "rllib_checkpoint.json"
META = "metadata.json"
MODULES = "learner_group/learner/rl_module"
CONNECTORS = "env_runner/env_to_module_connector"
STATE_FILES = ("algorithm_state.pkl", "class_and_ctor_args.pkl")
UNTRUSTED_NOTE = ("checkpoints hold pickled Python objects, so restoring one runs code from it: "
                  "only restore checkpoints you trust")


class Opaque:
    """Placeholder for a class the safe reader will not import; keeps its dotted name."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualname}>"

    qualname = "?"


_ALLOWED = {
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "slice"), ("builtins", "complex"), ("builtins", "tuple"), ("builtins", "list"),
    ("builtins", "dict"), ("builtins", "bytearray"),
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"),
}
_ALLOWED_MODULES = ("gymnasium.spaces.",)


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED or module.startswith(_ALLOWED_MODULES):
            return super().find_class(module, name)
        if module.startswith("numpy.dtypes"):
            return super().find_class(module, name)
        return type(name, (Opaque,), {"qualname": f"{module}.{name}"})


def safe_load(path: Any) -> Any:
    """Unpickle without importing or running anything but numpy, gymnasium spaces and builtins."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RlgraftError(f"cannot read `{path}`", found=str(exc),
                           fix="check the file permissions and the path") from exc
    try:
        return SafeUnpickler(io.BytesIO(data)).load()
    except Exception as exc:
        raise RlgraftError(
            f"`{path}` is corrupted or truncated ({type(exc).__name__}: {exc}; {len(data)} bytes)",
            fix="point at an intact checkpoint, e.g. an earlier checkpoint_00000N of the same "
                "trial, or re-save it",
        ) from exc


def read_json(path: Any) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise RlgraftError(f"`{path}` is not valid JSON ({exc})",
                           fix="the checkpoint is damaged: use another checkpoint") from exc


@dataclass
class ModuleInfo:
    module_id: str
    path: str
    module_class: str
    catalog_class: Any
    observation_space: Any
    action_space: Any
    model_config: dict[str, Any]
    params: dict[str, tuple[int, ...]]
    num_params: int

    def weights(self) -> dict[str, np.ndarray]:
        return load_module_state(storage.at(self.path))


@dataclass
class CheckpointInfo:
    path: str
    ray_version: str
    checkpoint_version: str
    modules: dict[str, ModuleInfo]
    counters: dict[str, float]
    training_iteration: int | None
    components: list[str] = field(default_factory=list)

    @property
    def multi_agent(self) -> bool:
        return set(self.modules) != {"default_policy"}


def is_algorithm_checkpoint(path: Any) -> bool:
    return (path / ALGO_METADATA).is_file()


def load_module_state(module_dir: Any) -> dict[str, np.ndarray]:
    state = safe_load(storage.at(module_dir) / "module_state.pkl")
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise RlgraftError(f"`{module_dir}/module_state.pkl` does not hold a dict of arrays",
                           fix="use an RLlib >= 2.40 checkpoint of a torch RLModule")
    return {str(k): v for k, v in state.items()}


def read_module(module_dir: Any) -> ModuleInfo:
    module_dir = storage.at(module_dir)
    for name in ("module_state.pkl", "class_and_ctor_args.pkl"):
        if not (module_dir / name).is_file():
            raise RlgraftError(f"module folder `{module_dir}` has no {name}",
                               fix="the checkpoint is incomplete: use another checkpoint")
    ctor = safe_load(module_dir / "class_and_ctor_args.pkl")
    kwargs = dict(ctor.get("ctor_args_and_kwargs", ((), {}))[1]) if isinstance(ctor, dict) else {}
    cls = ctor.get("class") if isinstance(ctor, dict) else None
    state = load_module_state(module_dir)
    model_config = kwargs.get("model_config")
    for space in (kwargs.get("observation_space"), kwargs.get("action_space")):
        if space is not None and hasattr(space, "_np_random"):
            space._np_random = None  # the pickled RNG was not rebuilt (placeholder): let gymnasium reseed
    return ModuleInfo(
        module_id=module_dir.name,
        path=str(module_dir),
        module_class=getattr(cls, "qualname", repr(cls)),
        catalog_class=kwargs.get("catalog_class"),
        observation_space=kwargs.get("observation_space"),
        action_space=kwargs.get("action_space"),
        model_config=dict(model_config) if isinstance(model_config, dict) else {},
        params={k: tuple(v.shape) for k, v in state.items()},
        num_params=int(sum(v.size for v in state.values())),
    )


def counters_of(path: Any) -> tuple[dict[str, float], int | None]:
    """Lifetime counters and iteration stored in algorithm_state.pkl, keyed as in Tune results."""
    state = safe_load(path / "algorithm_state.pkl")
    if not isinstance(state, dict):
        raise RlgraftError(f"`{path}/algorithm_state.pkl` does not hold a dict",
                           fix="use an RLlib new-API-stack checkpoint")
    stats = (state.get("metrics_logger") or {}).get("stats") or {}
    counters: dict[str, float] = {}
    for key, stat in stats.items():
        if isinstance(stat, dict) and "lifetime_sum" in stat:
            counters[key.replace("--", "/")] = float(stat["lifetime_sum"])
    if "env_runners/num_env_steps_sampled_lifetime" in counters:
        counters["num_env_steps_sampled_lifetime"] = counters["env_runners/num_env_steps_sampled_lifetime"]
    it = state.get("training_iteration")
    if it is not None:
        counters["training_iteration"] = float(it)
    return counters, (int(it) if it is not None else None)


def read(path: str | Path) -> CheckpointInfo:
    """Everything a driver needs to know about an algorithm checkpoint, without running its code."""
    root = storage.at(path)
    if storage.is_uri(path):
        root.list_tree()  # one listing answers every question below
    if not is_algorithm_checkpoint(root):
        raise RlgraftError(f"`{root}` is not an RLlib algorithm checkpoint (no {ALGO_METADATA})",
                           fix="point at a folder written by save_to_path() or a Tune checkpoint_*")
    meta = read_json(root / ALGO_METADATA)
    missing = [n for n in STATE_FILES if not (root / n).is_file()]
    if missing:
        raise RlgraftError(f"checkpoint `{root}` is incomplete: {', '.join(missing)} missing",
                           fix="use a complete checkpoint (an interrupted save leaves such folders)")
    modules_dir = root / MODULES
    if not modules_dir.is_dir():
        raise RlgraftError(f"checkpoint `{root}` has no `{MODULES}` folder",
                           fix="use a new-API-stack (RLModule) checkpoint")
    modules = {d.name: read_module(d) for d in sorted(modules_dir.iterdir())
               if d.is_dir() and (d / META).is_file()}
    if not modules:
        raise RlgraftError(f"checkpoint `{root}` holds no RLModule under `{MODULES}`",
                           fix="use another checkpoint")
    counters, iteration = counters_of(root)
    components = sorted(str(p.parent.relative_to(root)) for p in root.rglob(META))
    return CheckpointInfo(
        path=str(root), ray_version=str(meta.get("ray_version", "?")),
        checkpoint_version=str(meta.get("checkpoint_version", "?")), modules=modules,
        counters=counters, training_iteration=iteration, components=components,
    )


def check_state_files(root: Any) -> int:
    """Every pickle a full restore reads unpickles (safely): a truncated `learner_group/learner/state.pkl`
    is refused in the driver, not 14 s later inside the trial. Returns how many files were read."""
    import pickletools

    files = sorted(root.rglob("*.pkl"))
    for path in files:
        data = path.read_bytes()
        try:  # walks the opcodes to the final STOP without building anything (cloudpickle payloads too)
            for _ in pickletools.genops(data):
                pass
        except Exception as exc:
            raise RlgraftError(
                f"`{path}` is corrupted or truncated ({type(exc).__name__}: {exc}; {len(data)} bytes)",
                fix="point at an intact checkpoint, e.g. an earlier checkpoint_00000N of the same trial",
            ) from exc
    return len(files)


def connector_states(root: str | Path) -> dict[str, dict[Any, Any]]:
    """Stateful env-to-module connector pieces of a checkpoint: piece class name -> {agent id: state}
    (agent id None in a single-agent run). RLlib's MeanStdFilter keeps its running statistics here."""
    base = storage.at(root) / CONNECTORS
    out: dict[str, dict[Any, Any]] = {}
    if base.is_dir():
        for piece in sorted(p for p in base.iterdir() if p.is_dir()):
            if (piece / "state.pkl").is_file():
                state = safe_load(piece / "state.pkl")
                if isinstance(state, dict) and state:
                    out[piece.name] = state
    return out


def nested_digest(value: Any, drop: tuple[str, ...] = ()) -> str:
    """SHA-256 of a nested state (dicts, lists, arrays, scalars), keys in sorted order; `drop` leaves
    out keys by name (a filter's per-runner `*_delta*` buffers)."""
    h = hashlib.sha256()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            h.update(b"{")
            for k in sorted(v, key=str):
                if not any(d in str(k) for d in drop):
                    h.update(str(k).encode() + b":")
                    walk(v[k])
            h.update(b"}")
        elif isinstance(v, list | tuple):
            h.update(b"[")
            for x in v:
                walk(x)
            h.update(b"]")
        elif hasattr(v, "detach") or isinstance(v, np.ndarray):
            arr = np.ascontiguousarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
            h.update(f"{arr.dtype}{arr.shape}".encode() + arr.tobytes())
        elif isinstance(v, np.generic):
            h.update(repr(v.item()).encode())
        else:
            h.update(repr(v).encode())

    walk(value)
    return h.hexdigest()[:16]


def filter_digest(agent_state: Any) -> str:
    """What a connector piece carries from run to run (running statistics), not its per-runner buffers."""
    return nested_digest(agent_state, drop=("_delta",))


def digest(state: dict[str, Any], keys: list[str] | None = None) -> str:
    """Order-independent SHA-256 of named arrays (torch or numpy); short, for reports."""
    h = hashlib.sha256()
    for name in sorted(keys if keys is not None else state):
        arr = state[name]
        arr = arr.detach().cpu().numpy() if hasattr(arr, "detach") else np.asarray(arr)
        arr = np.ascontiguousarray(arr)
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def run_params(checkpoint: str | Path) -> dict[str, Any]:
    """The trial's config as Tune saved it in params.json beside the checkpoint ({} if absent)."""
    params = storage.at(checkpoint).parent / "params.json"
    if params.is_file():
        try:
            return dict(json.loads(params.read_text()))
        except ValueError:
            return {}
    return {}
