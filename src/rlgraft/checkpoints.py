"""Checkpoint discovery, safe inspection, and the one place that calls RLlib's Checkpointable API.

Reading: metadata and module weights are read with a restricted unpickler that builds numpy arrays,
gymnasium spaces and plain containers, and stands in a harmless placeholder for any other class, so
inspecting a checkpoint runs no code from it. Restoring (inside Ray) does unpickle fully, as RLlib
does: restore only from checkpoints you trust.
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

from rlgraft.errors import RlgraftError

ALGO_METADATA = "rllib_checkpoint.json"
META = "metadata.json"
MODULES = "learner_group/learner/rl_module"
STATE_FILES = ("algorithm_state.pkl", "class_and_ctor_args.pkl")
UNTRUSTED_NOTE = ("checkpoints hold pickled Python objects, so restoring one runs code from it: "
                  "only restore checkpoints you trust")


# --------------------------------------------------------------------------- safe reading
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


def safe_load(path: Path) -> Any:
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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise RlgraftError(f"`{path}` is not valid JSON ({exc})",
                           fix="the checkpoint is damaged: use another checkpoint") from exc


# --------------------------------------------------------------------------- inspection
@dataclass
class ModuleInfo:
    module_id: str
    path: str
    module_class: str
    observation_space: Any
    action_space: Any
    model_config: dict[str, Any]
    params: dict[str, tuple[int, ...]]
    num_params: int

    def weights(self) -> dict[str, np.ndarray]:
        return load_module_state(Path(self.path))


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


def is_algorithm_checkpoint(path: Path) -> bool:
    return (path / ALGO_METADATA).is_file()


def load_module_state(module_dir: Path) -> dict[str, np.ndarray]:
    state = safe_load(module_dir / "module_state.pkl")
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise RlgraftError(f"`{module_dir}/module_state.pkl` does not hold a dict of arrays",
                           fix="use an RLlib >= 2.40 checkpoint of a torch RLModule")
    return {str(k): v for k, v in state.items()}


def read_module(module_dir: Path) -> ModuleInfo:
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
        observation_space=kwargs.get("observation_space"),
        action_space=kwargs.get("action_space"),
        model_config=dict(model_config) if isinstance(model_config, dict) else {},
        params={k: tuple(v.shape) for k, v in state.items()},
        num_params=int(sum(v.size for v in state.values())),
    )


def counters_of(path: Path) -> tuple[dict[str, float], int | None]:
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
    root = Path(path)
    if not is_algorithm_checkpoint(root):
        raise RlgraftError(f"`{root}` is not an RLlib algorithm checkpoint (no {ALGO_METADATA})",
                           fix="point at a folder written by save_to_path() or a Tune checkpoint_*")
    meta = _read_json(root / ALGO_METADATA)
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


# --------------------------------------------------------------------------- discovery
@dataclass
class Candidate:
    path: str
    iteration: int
    metric: float | None = None
    mtime: float = 0.0


def _results_by_iteration(trial_dir: Path, metric: str) -> dict[int, float]:
    out: dict[int, float] = {}
    result_file = trial_dir / "result.json"
    if not result_file.is_file():
        return out
    for line in result_file.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        value: Any = row
        for part in metric.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, int | float) and "training_iteration" in row:
            out[int(row["training_iteration"])] = float(value)
    return out


def candidates(root: Path, metric: str, max_depth: int = 6) -> list[Candidate]:
    """Every algorithm checkpoint under `root` (or `root` itself), with its iteration and metric."""
    found: list[Path] = []
    if is_algorithm_checkpoint(root):
        found = [root]
    else:
        summary = root / "summary.json"
        if summary.is_file():
            data = _read_json(summary)  # an rlgraft run or multirun job: every checkpoint of its trials
            trial_dirs = [Path(t["path"]) for t in data.get("trials", []) if t.get("path")]
            found = [ck for d in trial_dirs for ck in _walk(d, 1)]
            if not found and data.get("checkpoint") and is_algorithm_checkpoint(Path(data["checkpoint"])):
                found = [Path(data["checkpoint"])]
        if not found:
            found = _walk(root, max_depth)
    out = []
    for ck in found:
        try:
            _, iteration = counters_of(ck)
        except RlgraftError:
            iteration = None
        it = iteration if iteration is not None else -1
        metrics = _results_by_iteration(ck.parent, metric)
        out.append(Candidate(str(ck), it, metrics.get(it), ck.stat().st_mtime))
    return out


def _walk(root: Path, depth: int) -> list[Path]:
    if depth < 0 or not root.is_dir():
        return []
    if is_algorithm_checkpoint(root):
        return [root]
    out: list[Path] = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            out += _walk(child, depth - 1)
    return out


def resolve(path: str, *, base: str, pick: str = "latest", metric: str = "", mode: str = "max") -> tuple[str, str]:
    """PATH in any accepted form -> (absolute checkpoint dir, how it was chosen)."""
    p = Path(path).expanduser()
    p = (Path(base) / p) if not p.is_absolute() else p
    p = p.resolve()
    if not p.exists():
        raise RlgraftError(f"checkpoint path `{p}` does not exist",
                           found=f"it was given as {path!r} and resolved against {base}",
                           fix="check the path; quote paths that contain '=' or ',' like "
                               "'+resume=\"/abs/path/with=,chars\"'")
    if p.is_file():
        raise RlgraftError(f"`{p}` is a file, not a checkpoint folder",
                           fix="point at the folder that holds rllib_checkpoint.json, or at a "
                               "Tune trial, Tune experiment or rlgraft run folder")
    cands = candidates(p, metric)
    if not cands:
        raise RlgraftError(f"`{p}` is not a checkpoint and holds none",
                           found="no rllib_checkpoint.json in it or below it, and no summary.json "
                                 "naming one",
                           fix="point at a checkpoint folder, a Tune trial/experiment folder or an "
                               "rlgraft run folder")
    if len(cands) == 1:
        return cands[0].path, "the only checkpoint"
    if pick == "best":
        scored = [c for c in cands if c.metric is not None]
        if not scored:
            raise RlgraftError(f"restore.pick=best but no checkpoint under `{p}` has a `{metric}` value",
                               fix="use restore.pick=latest or set metric=... to a reported key")
        sign = 1 if mode == "max" else -1
        best = max(scored, key=lambda c: sign * (c.metric or 0.0))
        return best.path, f"best {metric}={best.metric:.4g} of {len(cands)} checkpoints"
    latest = max(cands, key=lambda c: (c.iteration, c.mtime))
    return latest.path, f"latest (iteration {latest.iteration}) of {len(cands)} checkpoints"


# --------------------------------------------------------------------------- digests
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


# --------------------------------------------------------------------------- RLlib calls
def restore_all(algorithm: Any, checkpoint: str) -> None:
    algorithm.restore_from_path(checkpoint)


def restore_module(algorithm: Any, checkpoint: str, source: str, target: str) -> None:
    algorithm.restore_from_path(str(Path(checkpoint) / MODULES / source), component=f"{MODULES}/{target}")


def restore_component(algorithm: Any, source_path: str, component: str) -> None:
    algorithm.restore_from_path(source_path, component=component)


def learner_state(algorithm: Any, module_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Module weights as the learner holds them."""
    state = algorithm.learner_group.get_state(
        components=[f"learner/rl_module/{m}" for m in module_ids])
    return dict(state["learner"]["rl_module"])


def sync_env_runners(algorithm: Any, timeout_s: float = 60.0) -> None:
    """Push the learner's weights to every EnvRunner (local, remote, evaluation) and wait for each.

    RLlib's own post-restore `sync_weights` is fire-and-forget and skips runners with a request in
    flight; this is a blocking call per runner, so the weights are there when it returns.
    """
    import ray

    weights = algorithm.learner_group.get_state(components="learner/rl_module",
                                                inference_only=True)["learner"]["rl_module"]
    ref = ray.put({"rl_module": weights})
    for group in _runner_groups(algorithm):
        group.foreach_env_runner(_SetState(ref), local_env_runner=True, timeout_seconds=timeout_s)


@dataclass(frozen=True)
class SyncAfterLoad:
    """`on_checkpoint_loaded` callback: Tune's own trial restore has the same fire-and-forget sync."""

    def __call__(self, *, algorithm: Any, **kwargs: Any) -> None:
        sync_env_runners(algorithm)


@dataclass(frozen=True)
class _SetState:
    ref: Any

    def __call__(self, runner: Any) -> None:
        import ray

        runner.set_state(ray.get(self.ref))


def _runner_groups(algorithm: Any) -> list[Any]:
    return [g for g in (getattr(algorithm, "env_runner_group", None),
                        getattr(algorithm, "eval_env_runner_group", None)) if g is not None]


def _runner_digests(runner: Any) -> dict[str, dict[str, str]]:
    state = runner.get_state(components="rl_module", inference_only=True).get("rl_module", {})
    if state and all(not isinstance(v, dict) for v in state.values()):
        state = {"default_policy": state}  # single-agent runners hold one module
    return {mid: {k: digest({k: v}) for k, v in sd.items()} for mid, sd in state.items()
            if isinstance(sd, dict)}


def runner_digests(algorithm: Any) -> list[tuple[str, dict[str, dict[str, str]]]]:
    """Per-parameter digests of every EnvRunner's modules: (runner label, {module: {param: digest}})."""
    out: list[tuple[str, dict[str, dict[str, str]]]] = []
    for label, group in zip(("env_runner", "eval_env_runner"), _runner_groups(algorithm), strict=False):
        local = getattr(group, "local_env_runner", None)
        if local is not None:
            out.append((f"{label}[local]", _runner_digests(local)))
        if group.num_remote_workers():
            results = group.foreach_env_runner(_runner_digests, local_env_runner=False,
                                               timeout_seconds=60)
            out += [(f"{label}[remote {i + 1}]", r) for i, r in enumerate(results)]
    return out


def load_module(module_dir: str | Path) -> Any:
    """`RLModule.from_checkpoint`: unpickles the module class (trusted checkpoints only)."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    return RLModule.from_checkpoint(str(module_dir))


def run_params(checkpoint: str | Path) -> dict[str, Any]:
    """The trial's config as Tune saved it in params.json beside the checkpoint ({} if absent)."""
    params = Path(checkpoint).parent / "params.json"
    if params.is_file():
        try:
            return dict(json.loads(params.read_text()))
        except ValueError:
            return {}
    return {}
