"""The restore plan (checked in the driver, before Ray starts) and the on_algorithm_init callback.

The callback is a frozen dataclass with plain fields: Tune cloudpickles it into each trial, and it
can be printed, compared and called in tests like any value.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlgraft import checkpointable, checkpoints, discovery, envs
from rlgraft.checkpoints import CheckpointInfo, ModuleInfo
from rlgraft.errors import RlgraftError

log = logging.getLogger("rlgraft.restore")


@dataclass(frozen=True)
class Transfer:
    target: str
    source: str
    digest: str  # of the source weights, to prove they arrived
    params: tuple[tuple[str, tuple[int, ...]], ...] = ()  # name and shape of every parameter copied


@dataclass(frozen=True)
class RestoreCallback:
    """`on_algorithm_init` callback: restore, sync every EnvRunner, verify, report.

    full=True restores the whole algorithm (weights, optimizer, counters); otherwise only the listed
    modules and components change.
    """

    checkpoint: str
    transfers: tuple[Transfer, ...] = ()
    components: tuple[tuple[str, str], ...] = ()  # (target component, absolute source path)
    full: bool = False
    verify: bool = True
    report_dir: str | None = None

    def __call__(self, *, algorithm: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
        start = time.perf_counter()
        if self.full:
            checkpointable.restore_all(algorithm, self.checkpoint)
        else:
            for t in self.transfers:
                checkpointable.restore_module(algorithm, self.checkpoint, t.source, t.target)
        for component, source in self.components:
            checkpointable.restore_component(algorithm, source, component)
        checkpointable.sync_env_runners(algorithm)
        report: dict[str, Any] = self.check(algorithm) if self.verify else {"verified": False}
        report.update(checkpoint=self.checkpoint, full=self.full, seconds=round(time.perf_counter() - start, 3),
                      components=[list(c) for c in self.components], pid=os.getpid(),
                      iteration=int(getattr(algorithm, "iteration", 0) or 0))
        for line in describe(report):
            log.warning(line)
        if self.report_dir:
            out = Path(self.report_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"restore-{os.getpid()}-{time.time_ns()}.json").write_text(json.dumps(report, indent=2))

    def check(self, algorithm: Any) -> dict[str, Any]:
        """Learner weights equal the source; every EnvRunner holds the learner's weights."""
        targets = [t.target for t in self.transfers]
        learner = checkpointable.learner_state(algorithm, targets) if targets else {}
        rows, problems = [], []
        for t in self.transfers:
            got = checkpoints.digest(learner[t.target])
            if got != t.digest:
                problems.append(f"learner module {t.target!r} has weights {got}, expected {t.digest} "
                                f"from source module {t.source!r}")
            rows.append({"target": t.target, "source": t.source, "digest": got,
                         "learner_matches_source": got == t.digest})
        runners = checkpointable.runner_digests(algorithm)
        for label, modules in runners:
            for t in self.transfers:
                held = modules.get(t.target)
                if held is None:
                    problems.append(f"{label} holds no module {t.target!r}")
                    continue
                for name, dig in held.items():
                    if name in learner[t.target] and checkpoints.digest({name: learner[t.target][name]}) != dig:
                        problems.append(f"{label} module {t.target!r} parameter {name} differs "
                                        "from the learner's after the sync")
        if problems:
            raise RuntimeError("rlgraft restore verification failed: " + "; ".join(problems))
        return {"verified": True, "modules": rows, "runners_checked": [r[0] for r in runners]}


def describe(report: dict[str, Any]) -> list[str]:
    kind = "full restore" if report.get("full") else "partial restore"
    lines = [f"rlgraft {kind} from {report.get('checkpoint')} in {report.get('seconds', 0):.2f} s"]
    for m in report.get("modules", []):
        lines.append(f"  {m['source']} -> {m['target']}  weights {m['digest']}  "
                     f"{'verified' if m['learner_matches_source'] else 'MISMATCH'}")
    for target, source in report.get("components", []):
        lines.append(f"  component {source} -> {target}")
    if report.get("runners_checked"):
        lines.append(f"  EnvRunners in sync: {', '.join(report['runners_checked'])}")
    return lines


# --------------------------------------------------------------------------- driver-side plan
@dataclass
class RestorePlan:
    checkpoint: str
    how: str
    callback: RestoreCallback
    counters: dict[str, float] = field(default_factory=dict)
    ray_version: str = "?"

    def stop(self, stop: dict[str, float], budget: str) -> dict[str, float]:
        """Stop thresholds; with budget=additional each is moved by the checkpoint's value."""
        if budget != "additional" or not self.callback.full:
            return dict(stop)
        return {k: v + self.counters.get(k, 0.0) for k, v in stop.items()}

    def lines(self, stop: dict[str, float]) -> list[str]:
        """The plan as a person reads it (`restore.dry_run=true` prints it and stops)."""
        import ray

        kind = "full restore (weights, optimizer, counters)" if self.callback.full else "partial restore"
        out = [f"rlgraft plan: {kind} from {self.checkpoint} ({self.how})",
               f"  checkpoint written by Ray {self.ray_version}; installed Ray {ray.__version__}"]
        for t in self.callback.transfers:
            count = sum(math.prod(shape) for _, shape in t.params)
            out.append(f"  {t.source} -> {t.target}: {len(t.params)} tensors, {count} parameters, weights {t.digest}")
            out += [f"      {name} {list(shape)}" for name, shape in t.params]
        for target, source in self.callback.components:
            out.append(f"  component {source} -> {target}")
        counters = {k: v for k, v in self.counters.items()
                    if k in ("num_env_steps_sampled_lifetime", "training_iteration")}
        out.append(f"  checkpoint counters: {counters}")
        out.append(f"  stop: {stop}")
        return out

    def summary(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "chosen": self.how, "full": self.callback.full,
                "modules": [asdict(t) for t in self.callback.transfers],
                "components": [list(c) for c in self.callback.components],
                "source_counters": {k: v for k, v in self.counters.items()
                                    if k in ("num_env_steps_sampled_lifetime", "training_iteration")}}


def _space_str(space: Any) -> str:
    return str(space) if space is not None else "unknown"


def same_layout(a: Any, b: Any) -> bool:
    """Spaces a module's weights fit alike: equal, or Boxes of one shape and dtype (a connector such as
    MeanStdFilter changes a Box's bounds, not what the network takes in)."""
    if a == b:
        return True
    box = "Box"
    return (type(a).__name__ == type(b).__name__ == box and getattr(a, "shape", None) == getattr(b, "shape", None)
            and getattr(a, "dtype", None) == getattr(b, "dtype", None))


def compare_module(source: ModuleInfo, target_id: str, target_spaces: tuple[Any, Any],
                   target_params: dict[str, tuple[int, ...]]) -> None:
    """Refuse what RLlib would load silently (strict=False) or fail on minutes later."""
    where = f"source module {source.module_id!r} -> target module {target_id!r}"
    for label, have, want in (("observation", source.observation_space, target_spaces[0]),
                              ("action", source.action_space, target_spaces[1])):
        if have is not None and not same_layout(have, want):
            raise RlgraftError(
                f"{label} spaces differ for {where}",
                found=f"checkpoint: {_space_str(have)}; this run: {_space_str(want)}",
                fix="restore into a run of the same environment (env.id, env.kwargs), or map a "
                    "module with matching spaces in restore.modules",
            )
    missing = sorted(set(target_params) - set(source.params))
    extra = sorted(set(source.params) - set(target_params))
    shapes = sorted(f"{n}: checkpoint {source.params[n]} vs run {target_params[n]}"
                    for n in set(source.params) & set(target_params) if source.params[n] != target_params[n])
    if missing or extra or shapes:
        parts = []
        if shapes:
            parts.append("shape differs: " + "; ".join(shapes[:6]))
        if missing:
            parts.append("only in this run: " + ", ".join(missing[:6]))
        if extra:
            parts.append("only in the checkpoint: " + ", ".join(extra[:6]))
        hidden = source.model_config.get("fcnet_hiddens")
        raise RlgraftError(
            f"network parameters differ for {where}; RLlib would load this silently and leave "
            "the rest random",
            found=" | ".join(parts),
            fix="build the new run with the checkpoint's network"
                + (f", e.g. algo.rl_module.model_config.fcnet_hiddens=[{','.join(map(str, hidden))}]"
                  if hidden else ""),
        )


def param_shapes(spec: Any) -> dict[str, tuple[int, ...]]:
    """Build the module on the CPU (RLlib logs a deprecation notice while doing so) and read its shapes."""
    logging.disable(logging.WARNING)
    try:
        module = spec.build()
    finally:
        logging.disable(logging.NOTSET)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def plan(cfg: Any, config: Any) -> RestorePlan:
    """Resolve `cfg.resume`, check it against the run, and build the callback. Raises RlgraftError."""
    base = cfg.launch_dir or os.getcwd()
    ck, how = discovery.resolve(cfg.resume, base=base, pick=cfg.restore.pick.value,
                                  metric=cfg.metric, mode=cfg.mode)
    info = checkpoints.read(ck)
    modules = envs.resolve(cfg.env).modules()
    targets = list(modules)
    mapping = dict(cfg.restore.modules or {})
    full = not mapping and not cfg.restore.components
    if full:
        if set(info.modules) != set(targets):
            hint = (f"restore.modules={{{targets[0]}:{next(iter(info.modules))}}}" if len(targets) == 1
                    else "'restore.modules={" + ",".join(f"{t}:{next(iter(info.modules))}" for t in targets) + "}'")
            raise RlgraftError(
                "a full restore needs the same modules in the checkpoint and in this run",
                found=f"checkpoint modules: {', '.join(info.modules)}; this run's modules: "
                      f"{', '.join(targets)}",
                fix=f"choose which module goes where, e.g. {hint}",
            )
        mapping = {m: m for m in targets}
    transfers = checked_transfers(info, mapping, targets, config, modules)
    if full:
        checkpoints.check_state_files(Path(ck))
    components = []
    for target_component, source in (cfg.restore.components or {}).items():
        src = Path(source) if Path(source).is_absolute() else Path(ck) / source
        if not src.exists():
            raise RlgraftError(f"restore.components source `{src}` does not exist",
                               found=f"components in the checkpoint: {', '.join(info.components)}",
                               fix="give a path relative to the checkpoint, e.g. "
                                   "learner_group/learner/rl_module/p0")
        components.append((str(target_component), str(src)))
    callback = RestoreCallback(
        checkpoint=ck, transfers=transfers, components=tuple(components), full=full,
        verify=cfg.restore.verify,
        report_dir=str(Path(cfg.output_dir) / "restore") if cfg.output_dir else None,
    )
    return RestorePlan(checkpoint=ck, how=how, callback=callback, counters=info.counters,
                       ray_version=info.ray_version)


def check_sources(info: CheckpointInfo, mapping: dict[str, str]) -> None:
    for target, source in mapping.items():
        if source not in info.modules:
            raise RlgraftError(f"source module {source!r} is not in the checkpoint",
                               found=f"checkpoint {info.path} holds modules: {', '.join(info.modules)}",
                               fix=f"use one of those in restore.modules (here for target {target!r})")


def checked_transfers(info: CheckpointInfo, mapping: dict[str, str], targets: list[str], config: Any,
                      spaces: dict[str, tuple[Any, Any]]) -> tuple[Transfer, ...]:
    """Every source module is in the checkpoint, every target in the run, and spaces, parameter names
    and shapes agree (modules built locally on the CPU from `spaces`). Raises RlgraftError."""
    from rlgraft import algo

    check_sources(info, mapping)
    for target in mapping:
        if target not in targets:
            raise RlgraftError(f"target module {target!r} is not a module of this run",
                               found=f"this run's modules: {', '.join(targets)}",
                               fix="use one of those as the key in restore.modules, or change "
                                   "env.policy_mapping")
    if not mapping:
        return ()
    specs = algo.module_specs(config, spaces)  # RLlib wants spaces for every module of the run
    transfers = []
    for target, source in mapping.items():
        shapes = param_shapes(specs[target])
        compare_module(info.modules[source], target, spaces[target], shapes)
        transfers.append(Transfer(target, source, checkpoints.digest(info.modules[source].weights()),
                                  tuple(sorted(shapes.items()))))
    return tuple(transfers)


def factory(path: str | os.PathLike[str], *, modules: dict[str, str] | None = None,
            config: Any = None, verify: bool = True, report_dir: str | None = None) -> RestoreCallback:
    """For plain RLlib scripts: `config.callbacks(on_algorithm_init=rlgraft.restore_callback(PATH, ...))`.

    Checks the checkpoint and module ids now and, given `config`, target ids and network shapes
    (with the source modules' spaces standing in for the env's), not in the trial.
    """
    ck, _ = discovery.resolve(str(path), base=os.getcwd())
    info = checkpoints.read(ck)
    mapping = dict(modules or {m: m for m in info.modules})
    check_sources(info, mapping)
    if config is None:
        transfers = tuple(Transfer(t, s, checkpoints.digest(info.modules[s].weights())) for t, s in mapping.items())
    else:
        targets = list(config.policies) if config.is_multi_agent else [envs.SINGLE_AGENT_MODULE]
        pairs = {t: (info.modules[s].observation_space, info.modules[s].action_space) for t, s in mapping.items()}
        any_pair = next(iter(pairs.values()))
        transfers = checked_transfers(info, mapping, targets, config,
                                      {t: pairs.get(t, any_pair) for t in targets})
    return RestoreCallback(checkpoint=ck, transfers=transfers, full=modules is None, verify=verify,
                           report_dir=report_dir)
