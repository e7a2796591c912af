"""The restore plan (checked in the driver, before Ray starts) and the on_algorithm_init callback.

The callback is a frozen dataclass with plain fields: Tune cloudpickles it into each trial, and it
can be printed, compared and called in tests like any value.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rlgraft import algorithms, architecture, checkpointable, checkpoints, discovery, envs, storage
from rlgraft.checkpoints import CheckpointInfo, ModuleInfo
from rlgraft.configs import reports_dir
from rlgraft.errors import RlgraftError

log = logging.getLogger("rlgraft.restore")


@dataclass(frozen=True)
class Transfer:
    target: str
    source: str
    digest: str  # of the source weights, to prove they arrived
    params: tuple[tuple[str, tuple[int, ...]], ...] = ()  # name and shape of every parameter copied
    kept: tuple[str, ...] = ()  # parameters of the target left as built (`restore.params` globs)
    # Architecture differences accepted on purpose (`restore.accept`): (key, checkpoint value, run value).
    accepted: tuple[tuple[str, str, str], ...] = ()
    # (run name, checkpoint name) where a parameter is copied under another name (`algorithms.ALIKE`).
    renamed: tuple[tuple[str, str], ...] = ()
    # (target-network parameter, the parameter it follows): set from the grafted weights on the learner.
    targets: tuple[tuple[str, str], ...] = ()
    # The module classes, where a graft goes from one default module to another's (`algorithms.ALIKE`).
    classes: tuple[str, str] | None = None

    @property
    def partial(self) -> bool:
        return bool(self.kept or self.renamed or self.targets)

    def source_weights(self, weights: dict[str, Any]) -> dict[str, Any]:
        """The copied parameters under the run's names, from the checkpoint module's weights."""
        names = dict(self.renamed)
        return {n: weights[names.get(n, n)] for n, _ in self.params}


@dataclass(frozen=True)
class FilterTransfer:
    """A stateful connector piece's state for one agent (MeanStdFilter's running statistics), carried
    with the grafted module: RLlib's module restore leaves it behind (ray issue 54408's failure mode)."""

    piece: str
    target_agent: Any  # None in a single-agent run
    source_agent: Any
    state: Any
    digest: str


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
    filters: tuple[FilterTransfer, ...] = ()
    optimizer: str = "keep"  # keep | reset (full restore); fresh (a module graft: the target's own, as built)
    trainable: tuple[str, ...] | None = None  # the run's policies_to_train, set again after a full restore

    def __call__(self, *, algorithm: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
        start = time.perf_counter()
        fresh_optimizer = checkpointable.optimizer_state(algorithm) if self.optimizer == "reset" else None
        partial = [t for t in self.transfers if t.partial]
        as_built = checkpointable.learner_state(algorithm, [t.target for t in partial]) if partial else {}
        if self.full:
            checkpointable.restore_all(algorithm, self.checkpoint)
            checkpointable.set_trainable(algorithm, list(self.trainable) if self.trainable is not None else None)
        else:
            for t in self.transfers:
                if t.partial:
                    weights = checkpoints.load_module_state(storage.join(self.checkpoint, checkpoints.MODULES,
                                                                         t.source))
                    copied = t.source_weights(weights)
                    # the copied parameters' target networks follow them, as RLlib builds them
                    checkpointable.set_learner_weights(algorithm, t.target,
                                                       {**copied, **{a: copied[b] for a, b in t.targets}})
                else:
                    checkpointable.restore_module(algorithm, self.checkpoint, t.source, t.target)
        for component, source in self.components:
            checkpointable.restore_component(algorithm, source, component)
        optimizer = self.reset_optimizer(algorithm, fresh_optimizer) if fresh_optimizer is not None else {
            "mode": self.optimizer}
        for piece in sorted({f.piece for f in self.filters}):
            checkpointable.set_connector_state(
                algorithm, piece, {f.target_agent: f.state for f in self.filters if f.piece == piece})
        checkpointable.sync_env_runners(algorithm)
        report: dict[str, Any] = self.check(algorithm, as_built) if self.verify else {"verified": False}
        report.update(checkpoint=self.checkpoint, full=self.full, seconds=round(time.perf_counter() - start, 3),
                      components=[list(c) for c in self.components], pid=os.getpid(),
                      iteration=int(getattr(algorithm, "iteration", 0) or 0), optimizer=optimizer,
                      filters=[{"piece": f.piece, "source_agent": str(f.source_agent),
                                "target_agent": str(f.target_agent), "digest": f.digest} for f in self.filters])
        for line in describe(report):
            log.warning(line)
        if self.report_dir:  # the run's own folder, or its storage (a trial on another node writes there)
            out = storage.at(self.report_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"restore-{os.getpid()}-{time.time_ns()}.json").write_text(json.dumps(report, indent=2))

    def reset_optimizer(self, algorithm: Any, fresh: dict[str, Any]) -> dict[str, Any]:
        """Put back the optimizer state the run was built with, over the checkpoint's; prove it."""
        restored = checkpoints.nested_digest(checkpointable.optimizer_state(algorithm))
        checkpointable.set_optimizer_state(algorithm, fresh)
        now = checkpoints.nested_digest(checkpointable.optimizer_state(algorithm))
        want = checkpoints.nested_digest(fresh)
        if now != want or now == restored:
            raise RuntimeError(f"rlgraft restore.optimizer=reset failed: optimizer state {now}, fresh build {want}, "
                               f"checkpoint {restored}")
        return {"mode": "reset", "digest": now, "fresh_digest": want, "checkpoint_digest": restored}

    def check(self, algorithm: Any, as_built: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Learner weights equal the source (copied parameters only, the rest as built, for
        `restore.params`); every EnvRunner holds the learner's weights and the carried filter state."""
        targets = [t.target for t in self.transfers]
        learner = checkpointable.learner_state(algorithm, targets) if targets else {}
        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        for t in self.transfers:
            copied = [n for n, _ in t.params] if t.partial else None
            got = checkpoints.digest(learner[t.target], copied)
            if got != t.digest:
                problems.append(f"learner module {t.target!r} has weights {got}, expected {t.digest} "
                                f"from source module {t.source!r}")
            row = {"target": t.target, "source": t.source, "digest": got, "learner_matches_source": got == t.digest,
                   "accepted": [list(a) for a in t.accepted]}
            if t.partial:
                built = (as_built or {}).get(t.target, {})
                changed = [n for n in t.kept if checkpoints.digest(learner[t.target], [n])
                           != checkpoints.digest(built, [n])]
                if changed:
                    problems.append(f"learner module {t.target!r}: parameters left as built changed: "
                                    f"{', '.join(changed)}")
                held = learner[t.target]
                behind = [tn for tn, mn in t.targets if tn not in held or mn not in held
                          or checkpoints.digest({tn: held[tn]}) != checkpoints.digest({tn: held[mn]})]
                if behind:
                    problems.append(f"learner module {t.target!r}: target networks not set from the grafted weights: "
                                    f"{', '.join(behind[:6])}")
                row.update(copied=copied, kept_as_built=list(t.kept), renamed=[list(r) for r in t.renamed],
                           targets_set=len(t.targets) if not behind else 0)
            rows.append(row)
        for piece in sorted({f.piece for f in self.filters}):
            want = {str(f.target_agent): f.digest for f in self.filters if f.piece == piece}
            for label, held in checkpointable.connector_digests(algorithm, piece):
                wrong = [a for a, d in want.items() if held.get(a) != d]
                if wrong:
                    problems.append(f"{label} {piece} state for agent(s) {', '.join(wrong)} is not the source's")
        runners, differ = checkpointable.runners_differ(algorithm, learner, targets)
        problems += differ
        if problems:
            raise RuntimeError("rlgraft restore verification failed: " + "; ".join(problems))
        return {"verified": True, "modules": rows, "runners_checked": runners}


def describe(report: dict[str, Any]) -> list[str]:
    kind = "full restore" if report.get("full") else "partial restore"
    lines = [f"rlgraft {kind} from {report.get('checkpoint')} in {report.get('seconds', 0):.2f} s"]
    for m in report.get("modules", []):
        lines.append(f"  {m['source']} -> {m['target']}  weights {m['digest']}  "
                     f"{'verified' if m['learner_matches_source'] else 'MISMATCH'}"
                     + (f"  ({len(m['copied'])} parameters copied, {len(m['kept_as_built'])} kept as built)"
                        if "copied" in m else ""))
        if m.get("renamed"):
            lines.append(f"    {len(m['renamed'])} parameters under other names, e.g. "
                         f"{m['renamed'][0][1]} -> {m['renamed'][0][0]}")
        if m.get("targets_set"):
            lines.append(f"    target networks set from the grafted weights ({m['targets_set']} tensors, verified)")
        lines += [f"    accepted difference {k}: checkpoint {a}, this run {b} (restore.accept)"
                  for k, a, b in m.get("accepted", [])]
    for f in report.get("filters", []):
        lines.append(f"  {f['piece']} state: agent {f['source_agent']} -> agent {f['target_agent']}  {f['digest']}")
    opt = report.get("optimizer") or {}
    if opt.get("mode") == "reset":
        lines.append(f"  optimizer reset to a fresh build's state {opt['digest']} (checkpoint's was "
                     f"{opt['checkpoint_digest']})")
    elif opt.get("mode") == "fresh":
        lines.append("  optimizer: the grafted modules start with fresh optimizer state")
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
    schedule: list[str] = field(default_factory=list)  # freeze, thaw and self-play lines (`transfer.describe`)

    def stop(self, stop: dict[str, float], budget: str) -> dict[str, float]:
        """Stop thresholds; with budget=additional each is moved by the checkpoint's value."""
        if budget != "additional" or not self.callback.full:
            return dict(stop)
        return {k: v + self.counters.get(k, 0.0) for k, v in stop.items()}

    def lines(self, stop: dict[str, float]) -> list[str]:
        """The plan as a person reads it (`restore.dry_run=true` prints it and stops)."""
        import ray

        cb = self.callback
        kind = "full restore (weights, optimizer, counters)" if cb.full else "partial restore"
        out = [f"rlgraft plan: {kind} from {self.checkpoint} ({self.how})",
               f"  checkpoint written by Ray {self.ray_version}; installed Ray {ray.__version__}"]
        for t in cb.transfers:
            count = sum(math.prod(shape) for _, shape in t.params)
            out.append(f"  {t.source} -> {t.target}: {len(t.params)} tensors, {count} parameters, weights {t.digest}")
            names = dict(t.renamed)
            if t.classes:
                out.append(f"    {t.classes[0].rpartition('.')[2]} -> {t.classes[1].rpartition('.')[2]}: one policy "
                           "network under RLlib's names for each (rlgraft.algorithms.ALIKE)")
            out += [f"      {name} {list(shape)}" + (f"  <- {names[name]}" if name in names else "")
                    for name, shape in t.params]
            if t.targets:
                shown = ", ".join(f"{a} <- {b}" for a, b in t.targets[:4]) + (" ..." if len(t.targets) > 4 else "")
                out.append(f"    target networks set from the grafted weights ({len(t.targets)}): {shown}")
            if t.kept:
                out.append(f"    kept as built ({len(t.kept)}): {', '.join(t.kept)}")
            out += [f"    accepted difference {k}: checkpoint {a}, this run {b} (restore.accept)"
                    for k, a, b in t.accepted]
        for target, source in cb.components:
            out.append(f"  component {source} -> {target}")
        for f in cb.filters:
            out.append(f"  {f.piece} state: agent {f.source_agent} -> agent {f.target_agent}, {f.digest}")
        out.append("  optimizer: " + {"keep": "the checkpoint's (restore.optimizer=keep)",
                                      "reset": "fresh, as built (restore.optimizer=reset)",
                                      "fresh": "the grafted modules start fresh"}[cb.optimizer])
        for line in self.schedule:
            out.append(f"  {line}")
        counters = {k: v for k, v in self.counters.items()
                    if k in ("num_env_steps_sampled_lifetime", "training_iteration")}
        out.append(f"  checkpoint counters: {counters}")
        out.append(f"  stop: {stop}")
        return out

    def summary(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "chosen": self.how, "full": self.callback.full,
                "modules": [{**asdict(t), "kept": list(t.kept), "accepted": [list(a) for a in t.accepted]}
                            for t in self.callback.transfers],
                "accepted": [{"target": t.target, "source": t.source, "key": k, "checkpoint": a, "run": b}
                             for t in self.callback.transfers for k, a, b in t.accepted],
                "components": [list(c) for c in self.callback.components],
                "filters": [{"piece": f.piece, "source_agent": str(f.source_agent), "target_agent": str(f.target_agent),
                             "digest": f.digest} for f in self.callback.filters],
                "optimizer": self.callback.optimizer,
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
                   target_params: dict[str, tuple[int, ...]],
                   differing: list[tuple[str, str, str]] | None = None) -> None:
    """Refuse what RLlib would load silently (strict=False) or fail on minutes later; `differing`
    (architecture keys that differ) names the settings to change."""
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
    if (missing or extra or shapes) and (cls := next((d for d in differing or [] if d[0] == "module_class"), None)):
        short = [c.rpartition(".")[2] for c in cls[1:]]
        pairs = sorted({f"{a.rpartition('.')[2]} -> {b.rpartition('.')[2]}" for a, b in algorithms.ALIKE})
        raise RlgraftError(
            f"the checkpoint's module is a {short[0]} and this run's a {short[1]} for {where}: other networks, "
            "not one network under other names",
            found=" | ".join(p for p in (f"only in this run: {', '.join(missing[:4])}" if missing else "",
                                         f"only in the checkpoint: {', '.join(extra[:4])}" if extra else "") if p),
            fix=f"restore into a run of the algorithm the checkpoint was trained with (or one whose default module "
                f"is the same class); rlgraft grafts across these default modules: {', '.join(pairs)}; to copy only "
                "parameters both have, name them with restore.params=[GLOB]")
    if missing or extra or shapes:
        parts = []
        if shapes:
            parts.append("shape differs: " + "; ".join(shapes[:6]))
        if missing:
            parts.append("only in this run: " + ", ".join(missing[:6]))
        if extra:
            parts.append("only in the checkpoint: " + ", ".join(extra[:6]))
        hidden = source.model_config.get("fcnet_hiddens")
        settings = [f"{architecture.option_of(k)}={architecture.cli_value(a)}" for k, a, _ in differing or []
                    if k.startswith("model_config.") and a != architecture.ABSENT]
        if settings:
            parts.append("settings that differ: " + "; ".join(f"{k}: checkpoint {a}, this run {b}"
                                                             for k, a, b in (differing or [])[:6]))
        raise RlgraftError(
            f"network parameters differ for {where}; RLlib would load this silently and leave "
            "the rest random",
            found=" | ".join(parts),
            fix="build the new run with the checkpoint's network"
                + (f", e.g. {' '.join(settings[:3])}" if settings else
                   f", e.g. algo.rl_module.model_config.fcnet_hiddens=[{','.join(map(str, hidden))}]"
                   if hidden else ""),
        )


def build_module(spec: Any) -> Any:
    """Build the module on the CPU as the run will (RLlib logs a deprecation notice while doing so)."""
    logging.disable(logging.WARNING)
    try:
        return spec.build()
    except Exception as exc:
        name = getattr(spec.module_class, "__name__", "")
        raise RlgraftError(f"RLlib cannot build this run's module {name} ({type(exc).__name__}: {exc})",
                           fix="check algo.rl_module (model_config, rl_module_spec) against the env's spaces") from exc
    finally:
        logging.disable(logging.NOTSET)


def param_shapes(module: Any) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes; a module that is not a torch module (a heuristic RLModule) has none."""
    state = module.state_dict() if hasattr(module, "state_dict") else module.get_state()
    return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def plan(cfg: Any, config: Any) -> RestorePlan:
    """Resolve `cfg.resume`, check it against the run, and build the callback. Raises RlgraftError."""
    base = cfg.launch_dir or os.getcwd()
    ck, how = discovery.resolve(cfg.resume, base=base, pick=cfg.restore.pick.value,
                                  metric=cfg.metric, mode=cfg.mode)
    info = checkpoints.read(ck)
    from rlgraft import algo

    pieces, modules = algo.env_to_module(config, envs.resolve(cfg.env))  # the modules' spaces, as RLlib builds them
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
    # The filter state first: a MeanStdFilter on one side only has a message of its own.
    filters = filter_transfers(ck, info, mapping, cfg, full) if (full or cfg.restore.modules) else ()
    transfers = checked_transfers(info, mapping, targets, config, modules, list(cfg.restore.params or []),
                                  connectors=architecture.pipeline(pieces), full=full,
                                  accept=list(cfg.restore.accept or []),
                                  components=dict(cfg.restore.components or {}))
    if full:
        checkpoints.check_state_files(storage.at(ck))
    components = []
    for target_component, source in (cfg.restore.components or {}).items():
        src = component_source(ck, source)
        if not src.exists():
            raise RlgraftError(f"restore.components source `{src}` does not exist",
                               found=f"components in the checkpoint: {', '.join(info.components)}",
                               fix="give a path relative to the checkpoint, e.g. "
                                   "learner_group/learner/rl_module/p0")
        components.append((str(target_component), str(src)))
    optimizer = cfg.restore.optimizer.value if (full and cfg.restore.optimizer is not None) else (
        "keep" if full else "fresh")
    trainable = config.policies_to_train
    callback = RestoreCallback(
        checkpoint=ck, transfers=transfers, components=tuple(components), full=full,
        verify=cfg.restore.verify,
        report_dir=storage.join(reports_dir(cfg), "restore") if cfg.output_dir else None,
        filters=filters, optimizer=optimizer,
        trainable=tuple(trainable) if isinstance(trainable, list | tuple | set) else None,
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
                      spaces: dict[str, tuple[Any, Any]], globs: list[str] | None = None, *,
                      connectors: str | None = None, full: bool = False, accept: list[str] | None = None,
                      components: dict[str, str] | None = None) -> tuple[Transfer, ...]:
    """Every source module is in the checkpoint, every target in the run, and spaces, parameter names
    and shapes agree (modules built locally on the CPU from `spaces`, the modules' spaces after the
    env-to-module connectors); with `globs` (`restore.params`) only the matching parameters, in name and
    shape. Then what the modules compute: class, catalog, model_config, the connectors in front
    (`connectors`, None: not compared) and, for a full restore, the algorithm; a difference is refused
    unless `accept` names it. `components` (`restore.components`) that put a module folder into a module
    of the run are checked as module grafts. Raises RlgraftError."""
    from rlgraft import algo

    check_sources(info, mapping)
    for target in mapping:
        if target not in targets:
            raise RlgraftError(f"target module {target!r} is not a module of this run",
                               found=f"this run's modules: {', '.join(targets)}",
                               fix="use one of those as the key in restore.modules, or change "
                                   "env.policy_mapping")
    module_components = component_modules(info, components or {}, targets)
    if not mapping and not module_components:
        if accept:
            architecture.settle({}, accept)
        return ()
    specs = algo.module_specs(config, spaces)  # RLlib wants spaces for every module of the run
    source_pipeline = architecture.checkpoint_pipeline(info.path) if connectors is not None else None
    algorithm_names = (architecture.checkpoint_algorithm(info.path), architecture.dotted(config.algo_class)) if full \
        else (None, None)
    built: dict[str, tuple[Any, dict[str, str]]] = {}  # target -> (module, its target networks' parameters)
    found: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    copied: dict[tuple[str, str], list[str]] = {}  # `restore.params`: what each graft copies
    crossed: dict[tuple[str, str], tuple[dict[str, str], tuple[str, str]]] = {}  # `algorithms.ALIKE` grafts
    pairs = [(t, info.modules[s]) for t, s in mapping.items()] + module_components
    for target, source in pairs:
        if target not in built:
            module = build_module(specs[target])
            built[target] = (module, algorithms.target_networks(module, config.learner_class))
        module, follows = built[target]
        shapes = param_shapes(module)
        run = architecture.of_built(module, connectors if source_pipeline is not None else None,
                                    algorithm_names[1] if algorithm_names[0] else None)
        ckpt = architecture.of_module(source.module_class, source.catalog_class, source.model_config,
                                      source_pipeline, algorithm_names[0])
        pair = (target, source.module_id)
        classes = (ckpt["module_class"], run["module_class"])
        if pair in mapping.items() and algorithms.alike(*classes):
            names = algorithms.correspondence(*classes, set(source.params), set(shapes) - set(follows))
            if globs:  # over the run's names
                names = {n: s for n, s in names.items() if any(fnmatch.fnmatchcase(n, g) for g in globs)}
            check_renamed(source, target, shapes, names)
            crossed[pair] = (names, classes)
            found[pair] = [d for d in architecture.differences(ckpt, run, sizes=not globs)
                           if d[0] not in algorithms.ignored(*classes)]
        elif globs and pair in mapping.items():
            copied[pair] = selected_params(source, target, shapes, globs)
            found[pair] = architecture.differences(ckpt, run, sizes=False)
        else:
            found[pair] = architecture.differences(ckpt, run)
            compare_module(source, target, spaces[target], shapes, found[pair])
    accepted = architecture.settle(found, list(accept or []))
    transfers = []
    for target, source_id in mapping.items():
        source = info.modules[source_id]
        module, follows = built[target]
        shapes = param_shapes(module)
        ok = accepted.get((target, source_id), ())
        if (target, source_id) in crossed:
            names, classes = crossed[(target, source_id)]
            sets = tuple(sorted((t, m) for t, m in follows.items() if m in names))
            left = tuple(sorted(set(shapes) - set(names) - {t for t, _ in sets}))
            transfer = Transfer(target, source_id, "", tuple((n, shapes[n]) for n in sorted(names)), left,
                                accepted=ok, renamed=tuple(sorted((n, s) for n, s in names.items() if n != s)),
                                targets=sets, classes=classes)
            transfers.append(replace(transfer, digest=checkpoints.digest(transfer.source_weights(source.weights()))))
            continue
        if (target, source_id) in copied:
            chosen = copied[(target, source_id)]
            sets = tuple(sorted((t, m) for t, m in follows.items() if m in chosen and t not in chosen))
            transfers.append(Transfer(target, source_id, checkpoints.digest(source.weights(), chosen),
                                      tuple((n, shapes[n]) for n in chosen),
                                      tuple(sorted(set(shapes) - set(chosen) - {t for t, _ in sets})), accepted=ok,
                                      targets=sets))
            continue
        transfers.append(Transfer(target, source_id, checkpoints.digest(source.weights()),
                                  tuple(sorted(shapes.items())), accepted=ok))
    return tuple(transfers)


def check_renamed(source: ModuleInfo, target_id: str, target_params: dict[str, tuple[int, ...]],
                  names: dict[str, str]) -> None:
    """A graft between two default modules the table lists: the policy's parameters map, with one shape."""
    where = f"source module {source.module_id!r} -> target module {target_id!r}"
    bad = [f"{s} {source.params[s]} -> {n} {target_params[n]}" for n, s in sorted(names.items())
           if source.params[s] != target_params[n]]
    if not names or bad:
        hidden = source.model_config.get("fcnet_hiddens")
        raise RlgraftError(
            f"the policy network of {where} does not fit this run's: "
            + ("no parameter corresponds" if not names else "shapes differ"),
            found="; ".join(bad[:6]) or "checkpoint parameters: " + ", ".join(sorted(source.params)[:8]),
            fix="build the new run with the checkpoint's network" + (
                f", e.g. algo.rl_module.model_config.fcnet_hiddens=[{','.join(map(str, hidden))}]" if hidden else ""))


def component_source(checkpoint: str, source: str) -> Any:
    """A `restore.components` source: a URI or absolute path as it is, else relative to the checkpoint."""
    return storage.at(source) if storage.is_uri(source) or Path(source).is_absolute() \
        else storage.at(checkpoint) / source


def component_modules(info: CheckpointInfo, components: dict[str, str],
                      targets: list[str]) -> list[tuple[str, ModuleInfo]]:
    """`restore.components` entries that put a module folder (`.../rl_module/<id>`) into a module of this
    run: (target module id, the source module), to be checked as a module graft is."""
    out = []
    for target_component, source in components.items():
        target = str(target_component)
        if not target.startswith(checkpoints.MODULES + "/"):
            continue
        module_id = target.removeprefix(checkpoints.MODULES + "/")
        src = component_source(info.path, source)
        if module_id in targets and (src / "module_state.pkl").is_file():
            out.append((module_id, checkpoints.read_module(src)))
    return out


def selected_params(source: ModuleInfo, target_id: str, target_params: dict[str, tuple[int, ...]],
                    globs: list[str]) -> list[str]:
    """The parameters `restore.params` copies: each glob matches something, and every matching parameter
    is in both modules with one shape. Spaces are not compared: the shapes are what must fit."""
    where = f"source module {source.module_id!r} -> target module {target_id!r}"
    names = set(source.params) | set(target_params)
    empty = [g for g in globs if not any(fnmatch.fnmatchcase(n, g) for n in names)]
    if empty:
        raise RlgraftError(f"restore.params glob(s) {', '.join(map(repr, empty))} match no parameter of {where}",
                           found="parameters: " + ", ".join(sorted(names)[:12]),
                           fix="use globs over those names, e.g. 'restore.params=[encoder.*]'")
    chosen = sorted(n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs))
    bad = [f"{n}: checkpoint {source.params.get(n, 'absent')} vs run {target_params.get(n, 'absent')}"
           for n in chosen if source.params.get(n) != target_params.get(n)]
    if bad:
        raise RlgraftError(f"restore.params selects parameters that do not fit for {where}",
                           found="; ".join(bad[:6]),
                           fix="narrow restore.params to parameters both networks share (e.g. encoder.*), or build "
                               "the run with the checkpoint's network")
    return chosen


def filter_transfers(ck: str, info: CheckpointInfo, mapping: dict[str, str], cfg: Any,
                     full: bool) -> tuple[FilterTransfer, ...]:
    """The connector state (MeanStdFilter's running statistics) that goes with each restored module, per
    target agent. A stateful piece on one side only is refused: the module would see observations
    scaled differently from those it learnt on."""
    from rlgraft import objects

    source_states = checkpoints.connector_states(ck)
    run_pieces = objects.stateful_pieces(cfg.algo.env_runners.get("env_to_module_connector"))
    for piece in sorted(set(source_states) - set(run_pieces)):
        raise RlgraftError(
            f"the checkpoint's modules learnt on observations passed through {piece} (its state is in "
            f"{checkpoints.CONNECTORS}/{piece}), but this run has no {piece}, so they would see raw observations",
            fix=f"add the same connector, e.g. +algo.env_runners.env_to_module_connector='{{_target_: "
                f"ray.rllib.connectors.env_to_module.{piece}}}' (experiment=pendulum_meanstd has it)")
    for piece in sorted(set(run_pieces) - set(source_states)):
        raise RlgraftError(
            f"this run passes observations through {piece}, but the checkpoint has no {piece} state: its modules "
            f"learnt on raw observations and the filter would start from nothing",
            fix="drop algo.env_runners.env_to_module_connector for this run, or restore from a run that had it")
    if not source_states:
        return ()
    out = []
    if full:  # the same run: every agent's state as it was saved (RLlib restores it too, buffers and all)
        for piece, states in source_states.items():
            out += [FilterTransfer(piece, agent, agent, fresh_buffers(s), checkpoints.filter_digest(s))
                    for agent, s in states.items()]
        return tuple(out)
    env = envs.resolve(cfg.env)
    source_agents = _source_agents(ck, info, source_states)
    for target, source in mapping.items():
        from_agent = next((a for a, m in source_agents if m == source), _MISSING)
        targets_agents = [a for a in env.agents if env.module_of(a) == target]
        for piece, states in source_states.items():
            if from_agent is _MISSING or from_agent not in states:
                raise RlgraftError(f"cannot tell which agent's {piece} state belongs to source module {source!r}",
                                   found=f"{piece} state holds agents {', '.join(map(repr, states))}",
                                   fix="restore from an rlgraft run (its summary.json records the policy mapping) "
                                       "or a run without the connector")
            out += [FilterTransfer(piece, agent, from_agent, fresh_buffers(states[from_agent]),
                                   checkpoints.filter_digest(states[from_agent])) for agent in targets_agents]
    return tuple(out)


def fresh_buffers(agent_state: Any) -> Any:
    """A filter state with its since-last-sync buffers (`*_delta*`) emptied. RLlib merges runners' filters
    by adding each remote runner's deltas to the local statistics, so a restored delta would count the
    source's observations twice (measured: 515 source pushes + 258 new became 1288)."""
    if not isinstance(agent_state, dict) or "running_stats" not in agent_state:
        return agent_state
    import numpy as np
    from ray.rllib.utils.filter import _deserialize_ndarray, _serialize_ndarray

    def empty(stats: dict[str, Any]) -> dict[str, Any]:
        out = dict(stats, num_pushes_delta=0)
        for key in ("mean_delta_array", "sum_sq_diff_delta_array"):
            if key in stats:
                out[key] = _serialize_ndarray(np.zeros_like(_deserialize_ndarray(stats[key])))
        return out

    return {**agent_state, "running_stats": [empty(s) for s in agent_state["running_stats"]]}


_MISSING = object()


def _source_agents(ck: str, info: CheckpointInfo, states: dict[str, dict[Any, Any]]) -> list[tuple[Any, str]]:
    """(agent id, module id) pairs of the source run: single-agent is (None, default_policy); a multi-agent
    run's mapping is read from its rlgraft config (summary.json or .hydra/config.yaml above the checkpoint)."""
    agents = sorted({a for s in states.values() for a in s}, key=str)
    if not info.multi_agent:
        return [(None, envs.SINGLE_AGENT_MODULE)]
    mapping_value = _recorded_mapping(storage.at(ck))
    if mapping_value is None:
        return []
    from rlgraft.schema import EnvConfig

    mapping = envs.mapping_of(EnvConfig(policy_mapping=mapping_value))
    return [(a, mapping(a)) for a in agents]


def _recorded_mapping(ck: Any) -> Any:
    for parent in list(ck.parents)[:6]:
        summary = parent / "summary.json"
        if summary.is_file():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                return json.loads(summary.read_text())["config"]["env"]["policy_mapping"]
        hydra = parent / ".hydra" / "config.yaml"
        if hydra.is_file():
            from omegaconf import OmegaConf

            with contextlib.suppress(Exception):
                value = OmegaConf.load(hydra).env.policy_mapping
                return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return None


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
