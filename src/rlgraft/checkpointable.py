"""The one module that calls RLlib's Checkpointable API and reads or sets EnvRunner state.

A Ray upgrade that changes restore, `get_state` or weight syncing touches only this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlgraft import storage
from rlgraft.checkpoints import MODULES, digest, filter_digest


def restore_all(algorithm: Any, checkpoint: str) -> None:
    _restore(algorithm, checkpoint)


def restore_module(algorithm: Any, checkpoint: str, source: str, target: str) -> None:
    _restore(algorithm, storage.join(checkpoint, MODULES, source), component=f"{MODULES}/{target}")


def restore_component(algorithm: Any, source_path: str, component: str) -> None:
    _restore(algorithm, source_path, component=component)


def _restore(algorithm: Any, path: str, **kwargs: Any) -> None:
    """RLlib's `Algorithm.restore_from_path`: Checkpointable's restore, then a weight sync to the training
    EnvRunners. An offline algorithm (BC, MARWIL) has none (`env_runner_group` is None), and the sync failed
    with AttributeError after the restore itself had run (RLlib 2.60). There the restore is Checkpointable's
    alone; rlgraft's own sync (`sync_env_runners`) then reaches the evaluation EnvRunner, which acts."""
    if getattr(algorithm, "env_runner_group", None) is None:
        _checkpointable_restore(algorithm, path, **kwargs)
        return
    algorithm.restore_from_path(path, **kwargs)


def _checkpointable_restore(algorithm: Any, path: Any, *args: Any, **kwargs: Any) -> None:
    from ray.rllib.utils.checkpoints import Checkpointable

    Checkpointable.restore_from_path(algorithm, path, *args, **kwargs)


@dataclass(frozen=True)
class OfflineRestore:
    """`on_algorithm_init` for an algorithm without training EnvRunners (BC, MARWIL): this instance's
    `restore_from_path` is Checkpointable's alone (see `_restore`). Tune restores a resumed or retried trial
    through it (`Algorithm.load_checkpoint`), and an interrupted BC run failed to go on (measured: "'NoneType'
    object has no attribute 'sync_weights'"). One instance's method is replaced; RLlib's class is untouched,
    and `SyncAfterLoad` then gives the evaluation EnvRunner the restored weights."""

    def __call__(self, *, algorithm: Any, **kwargs: Any) -> None:
        if getattr(algorithm, "env_runner_group", None) is None:
            import functools

            algorithm.restore_from_path = functools.partial(_checkpointable_restore, algorithm)


def set_learner_weights(algorithm: Any, module_id: str, weights: dict[str, Any]) -> None:
    """Set some parameters of one learner module (the rest stay as they are: RLlib's learner-side
    `set_state` is `load_state_dict(strict=False)`, which is what a partial-parameter graft wants)."""
    algorithm.learner_group.set_state({"learner": {"rl_module": {module_id: weights}}})


def target_parameters(algorithm: Any, module_ids: list[str]) -> dict[str, frozenset[str]]:
    """Per module, the names of its target-network parameters as the learner holds them (empty without)."""
    results = algorithm.learner_group.foreach_learner(_TargetNames(tuple(module_ids)))
    return next(iter(results)).get()


@dataclass(frozen=True)
class _TargetNames:
    module_ids: tuple[str, ...]

    def __call__(self, learner: Any) -> dict[str, frozenset[str]]:
        from rlgraft.algorithms import target_pairs

        return {m: frozenset(target_pairs(learner.module[m].unwrapped())) for m in self.module_ids}


def set_trainable(algorithm: Any, modules: list[str] | None) -> None:
    """The modules the learner updates (RLlib's `policies_to_train`; None: all). A full restore sets the
    checkpoint's own list, so rlgraft sets the run's after it."""
    algorithm.learner_group.set_state({"learner": {"should_module_be_updated": modules}})


def optimizer_state(algorithm: Any) -> dict[str, Any]:
    return dict(algorithm.learner_group.get_state(components="learner/optimizer")["learner"]["optimizer"])


def set_optimizer_state(algorithm: Any, state: dict[str, Any]) -> None:
    algorithm.learner_group.set_state({"learner": {"optimizer": state}})


def set_connector_state(algorithm: Any, piece: str, state: dict[Any, Any], timeout_s: float = 60.0) -> None:
    """Set an env-to-module connector piece's state (e.g. MeanStdFilter's, per agent id) on every EnvRunner.
    A module restore loads no connector state at all; a piece's `set_state` touches only the agents given."""
    import ray

    ref = ray.put({"env_to_module_connector": {piece: state}})
    for group in _runner_groups(algorithm):
        group.foreach_env_runner(_SetState(ref), local_env_runner=True, timeout_seconds=timeout_s)


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


def in_every_process(algorithm: Any, func: Any) -> None:
    """Call `func()` in the algorithm's own process and in each remote EnvRunner (training and evaluation)
    and remote learner: every process that samples or learns."""
    func()
    for group in _runner_groups(algorithm):
        if group.num_remote_env_runners():
            group.foreach_env_runner(lambda _runner: func(), local_env_runner=False)
    if not algorithm.learner_group.is_local:
        algorithm.learner_group.foreach_learner(lambda _learner: func())


def _runner_groups(algorithm: Any) -> list[Any]:
    return [g for g in (getattr(algorithm, "env_runner_group", None),
                        getattr(algorithm, "eval_env_runner_group", None)) if g is not None]


def _runner_digests(runner: Any) -> dict[str, dict[str, str]]:
    state = runner.get_state(components="rl_module", inference_only=True).get("rl_module", {})
    if state and all(not isinstance(v, dict) for v in state.values()):
        state = {"default_policy": state}  # single-agent runners hold one module
    return {mid: {k: digest({k: v}) for k, v in sd.items()} for mid, sd in state.items()
            if isinstance(sd, dict)}


@dataclass(frozen=True)
class _ConnectorDigests:
    piece: str

    def __call__(self, runner: Any) -> dict[str, str]:
        state = runner.get_state(components="env_to_module_connector").get("env_to_module_connector", {})
        return {str(agent): filter_digest(s) for agent, s in (state.get(self.piece) or {}).items()}


def _on_every_runner(algorithm: Any, fn: Any) -> list[tuple[str, Any]]:
    """(runner label, fn(runner)) for the local and every remote EnvRunner, training and evaluation."""
    out: list[tuple[str, Any]] = []
    for label, group in zip(("env_runner", "eval_env_runner"), _runner_groups(algorithm), strict=False):
        local = getattr(group, "local_env_runner", None)
        if local is not None:
            out.append((f"{label}[local]", fn(local)))
        if group.num_remote_workers():
            results = group.foreach_env_runner(fn, local_env_runner=False, timeout_seconds=60)
            out += [(f"{label}[remote {i + 1}]", r) for i, r in enumerate(results)]
    return out


def runner_digests(algorithm: Any) -> list[tuple[str, dict[str, dict[str, str]]]]:
    """Per-parameter digests of every EnvRunner's modules: (runner label, {module: {param: digest}})."""
    return _on_every_runner(algorithm, _runner_digests)


def runners_differ(algorithm: Any, learner: dict[str, dict[str, Any]],
                   modules: list[str]) -> tuple[list[str], list[str]]:
    """Compare every EnvRunner's weights of `modules` with the learner's (`learner_state`):
    (runner labels, problems: a runner without the module or a parameter that differs)."""
    runners = runner_digests(algorithm)
    problems = []
    for label, held in runners:
        for m in modules:
            if m not in held:
                problems.append(f"{label} holds no module {m!r}")
                continue
            wrong = [n for n, d in held[m].items() if n in learner[m] and digest({n: learner[m][n]}) != d]
            if wrong:
                problems.append(f"{label} module {m!r} differs from the learner's weights ({', '.join(wrong)})")
    return [label for label, _ in runners], problems


def connector_digests(algorithm: Any, piece: str) -> list[tuple[str, dict[str, str]]]:
    """Every EnvRunner's state digests of one connector piece: (runner label, {str(agent id): digest})."""
    return _on_every_runner(algorithm, _ConnectorDigests(piece))


def saved_config(checkpoint: str) -> Any:
    """The AlgorithmConfig the checkpoint's EnvRunner was built with (unpickled: trusted checkpoints only,
    as RLlib's own `from_checkpoint`)."""
    import pickle

    ctor = pickle.loads((storage.at(checkpoint) / "env_runner" / "class_and_ctor_args.pkl").read_bytes())
    return ctor["ctor_args_and_kwargs"][1]["config"]


def record_episodes(checkpoint: str, output: str, episodes: int, *, explore: bool, seed: int) -> list[float]:
    """Run `episodes` episodes with the checkpoint's module and connector state in RLlib's recording
    EnvRunner, which writes them (packed `SingleAgentEpisode` states, Parquet) under `output`; the returns."""
    import logging

    import ray.data
    from ray.rllib.offline.offline_env_runner import OfflineSingleAgentEnvRunner

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)

    config = saved_config(checkpoint).copy(copy_frozen=False)
    config.env_runners(num_env_runners=0, batch_mode="complete_episodes")
    config.debugging(seed=seed)
    # Without a row limit each `sample` writes everything it holds, and its buffer is never emptied: with
    # `output_write_remaining_data` `stop()` would write every episode a second time (measured: 10 rows for 5).
    config.offline_data(output=output, output_write_episodes=True, output_max_rows_per_file=None,
                        output_write_remaining_data=False)
    runner = OfflineSingleAgentEnvRunner(config=config, worker_index=0, num_workers=0)
    try:
        runner.restore_from_path(storage.join(checkpoint, "env_runner"))  # connector state (e.g. MeanStdFilter)
        assert runner.module is not None
        runner.module.restore_from_path(storage.join(checkpoint, MODULES, "default_policy"))
        done = runner.sample(num_episodes=episodes, explore=explore)
    finally:
        runner.stop()
    return [float(e.get_return()) for e in done]


def load_module(module_dir: Any) -> Any:
    """`RLModule.from_checkpoint`: unpickles the module class (trusted checkpoints only)."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    return RLModule.from_checkpoint(str(module_dir))
