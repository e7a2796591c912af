"""The one module that calls RLlib's Checkpointable API and reads or sets EnvRunner state.

A Ray upgrade that changes restore, `get_state` or weight syncing touches only this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlgraft.checkpoints import MODULES, digest


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
