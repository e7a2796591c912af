"""What happens to modules after the restore: frozen modules (proved unchanged every iteration), their
thaw, and self-play snapshots (one module's weights copied into frozen opponents every N iterations).

The hooks are frozen dataclasses for RLlib's `on_algorithm_init`, `on_checkpoint_loaded` and
`on_train_result`; what they did is written as JSON events under the run's `transfer/` folder and
added to each result under `rlgraft/`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from rlgraft import checkpointable, checkpoints, storage
from rlgraft.errors import RlgraftError
from rlgraft.schema import Config

FROZEN_ATTR = "_rlgraft_frozen_digests"  # on the Algorithm: module id -> digest its weights must keep


@dataclass(frozen=True)
class Schedule:
    """The freeze, thaw and self-play plan of a run, checked in the driver."""

    frozen: tuple[str, ...] = ()  # restore.freeze and selfplay.to
    thaw: tuple[str, ...] = ()  # restore.freeze: these train again at `thaw_at`
    thaw_at: float | None = None  # lifetime env steps
    trainable: tuple[str, ...] | None = None  # policies_to_train before the thaw (None: every module)
    trainable_after_thaw: tuple[str, ...] | None = None
    selfplay_from: str | None = None
    selfplay_to: tuple[str, ...] = ()
    every: int = 0
    start_iteration: int = 0  # iteration the run starts from (a full restore continues the checkpoint's)
    verify: bool = True  # restore.verify: prove frozen weights on the learner and every EnvRunner

    @property
    def active(self) -> bool:
        return bool(self.frozen)

    def lines(self) -> list[str]:
        out = []
        if self.thaw:
            out.append(f"frozen: {', '.join(self.thaw)} (learner does not update them; they act in the env)"
                       + (f", thawed at {self.thaw_at:g} env steps" if self.thaw_at is not None else ""))
        if self.selfplay_from:
            out.append(f"self-play: every {self.every} iterations {self.selfplay_from} -> "
                       f"{', '.join(self.selfplay_to)} (frozen between snapshots)")
        return out

    def summary(self) -> dict[str, Any]:
        return {"frozen": list(self.thaw), "thaw_at_env_steps": self.thaw_at,
                "selfplay": ({"from": self.selfplay_from, "to": list(self.selfplay_to), "every": self.every}
                             if self.selfplay_from else None)}


def schedule(c: Config, modules: list[str], restored_steps: float = 0.0, restored_iteration: int = 0) -> Schedule:
    """The run's schedule; a module that is not the run's, or freezing every module, is refused."""
    freeze = [str(m) for m in c.restore.freeze or []]
    sp = c.selfplay or {}
    to = ([sp["to"]] if isinstance(sp.get("to"), str) else list(sp.get("to") or [])) if sp else []
    for key, names in (("restore.freeze", freeze), ("selfplay.to", to),
                       ("selfplay.from", [sp["from"]] if sp else [])):
        unknown = [m for m in names if m not in modules]
        if unknown:
            raise RlgraftError(f"{key} names {', '.join(map(repr, unknown))}, not a module of this run",
                               found=f"this run's modules: {', '.join(modules)}",
                               fix=f"use those module ids in {key} (env.policy_mapping decides them)")
    frozen = tuple(dict.fromkeys([*freeze, *to]))
    if frozen and set(frozen) >= set(modules):
        raise RlgraftError(f"every module of this run would be frozen ({', '.join(frozen)}), so nothing trains",
                           fix="leave at least one module out of restore.freeze and selfplay.to")
    trainable = tuple(m for m in modules if m not in frozen) if frozen else None
    after = tuple(m for m in modules if m not in to) if to else None
    thaw_at = (restored_steps + c.restore.unfreeze_after) if c.restore.unfreeze_after is not None else None
    return Schedule(frozen=frozen, thaw=tuple(freeze), thaw_at=thaw_at, trainable=trainable,
                    trainable_after_thaw=after, selfplay_from=sp.get("from") if sp else None,
                    selfplay_to=tuple(to), every=int(sp.get("every", 0)) if sp else 0,
                    start_iteration=restored_iteration, verify=c.restore.verify)


def _digests(algorithm: Any, modules: list[str] | tuple[str, ...],
             state: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """Digest of each module's learner weights but its target networks: RLlib's learners update every
    module's targets towards its main network (DQN, SAC, APPO), trained or not, so a frozen module's
    targets move while the weights it acts and learns with do not."""
    state = state if state is not None else checkpointable.learner_state(algorithm, list(modules))
    targets = checkpointable.target_parameters(algorithm, list(modules))
    return {m: checkpoints.digest(state[m], keys=[k for k in state[m] if k not in targets[m]]) for m in modules}


def _record(algorithm: Any, modules: tuple[str, ...]) -> dict[str, str]:
    digests = _digests(algorithm, modules)
    setattr(algorithm, FROZEN_ATTR, digests)
    return digests


def _event(report_dir: str | None, **event: Any) -> None:
    if report_dir:
        out = storage.at(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{event['event']}-{os.getpid()}-{time.time_ns()}.json").write_text(json.dumps(event))


@dataclass(frozen=True)
class Frozen:
    """Frozen modules: their weights recorded after the restore (`start`, also after Tune loads a trial
    checkpoint), proved unchanged on the learner and every EnvRunner after each iteration, thawed at
    `thaw_at` env steps."""

    plan: Schedule
    report_dir: str | None = None

    def start(self, *, algorithm: Any, **kwargs: Any) -> None:
        _record(algorithm, self.plan.frozen)

    def __call__(self, *, algorithm: Any, result: dict[str, Any], **kwargs: Any) -> None:
        steps = float(result.get("num_env_steps_sampled_lifetime")
                      or result.get("env_runners", {}).get("num_env_steps_sampled_lifetime") or 0)
        thawed = self.plan.thaw_at is not None and steps >= self.plan.thaw_at
        still = tuple(m for m in self.plan.frozen if not (thawed and m in self.plan.thaw))
        want = getattr(algorithm, FROZEN_ATTR, None) or _record(algorithm, self.plan.frozen)
        proved = self.prove(algorithm, {m: want[m] for m in still}) if still and self.plan.verify else []
        if thawed and not getattr(algorithm, "_rlgraft_thawed", False):
            after = self.plan.trainable_after_thaw
            checkpointable.set_trainable(algorithm, list(after) if after is not None else None)
            algorithm._rlgraft_thawed = True
            _event(self.report_dir, event="thaw", modules=list(self.plan.thaw), env_steps=steps,
                   iteration=int(result.get("training_iteration", 0)))
        # Strings, not lists: Tune's CSV and TensorBoard loggers take scalars and strings.
        result.setdefault("rlgraft", {}).update(frozen=",".join(still), frozen_verified_on=",".join(proved),
                                                thawed=bool(thawed and self.plan.thaw))

    def prove(self, algorithm: Any, want: dict[str, str]) -> list[str]:
        """Learner and every EnvRunner hold the frozen weights; returns the runners checked."""
        learner = checkpointable.learner_state(algorithm, list(want))
        held = _digests(algorithm, list(want), learner)
        problems = [f"learner module {m!r} changed while frozen ({held[m]}, expected {d})"
                    for m, d in want.items() if held[m] != d]
        runners, differ = checkpointable.runners_differ(algorithm, learner, list(want))
        if problems or differ:
            raise RuntimeError("rlgraft frozen-module check failed: " + "; ".join(problems + differ))
        return runners


@dataclass(frozen=True)
class SelfPlay:
    """Every `every` iterations (counted from the run's start), copy `from`'s learner weights into each
    module of `to`, push them to every EnvRunner, and prove they arrived."""

    plan: Schedule
    report_dir: str | None = None

    def __call__(self, *, algorithm: Any, result: dict[str, Any], **kwargs: Any) -> None:
        it = int(result.get("training_iteration", 0))
        done = max(0, (it - self.plan.start_iteration) // self.plan.every)
        source = self.plan.selfplay_from
        assert source is not None
        if it > self.plan.start_iteration and (it - self.plan.start_iteration) % self.plan.every == 0:
            weights = checkpointable.learner_state(algorithm, [source])[source]
            for target in self.plan.selfplay_to:
                checkpointable.set_learner_weights(algorithm, target, weights)
            checkpointable.sync_env_runners(algorithm)
            digest = _digests(algorithm, [source], {source: weights})[source]  # what was copied, not what arrived
            copied = dict.fromkeys(self.plan.selfplay_to, digest)
            setattr(algorithm, FROZEN_ATTR, {**(getattr(algorithm, FROZEN_ATTR, None) or {}), **copied})
            runners = Frozen(self.plan).prove(algorithm, copied)
            _event(self.report_dir, event="snapshot", iteration=it, source=source, targets=list(self.plan.selfplay_to),
                   digest=digest, runners=runners)
        last = self.plan.start_iteration + done * self.plan.every if done else None
        result.setdefault("rlgraft", {}).update(selfplay_snapshots=done, selfplay_last_iteration=last)


def hooks(plan: Schedule, output_dir: str | None) -> dict[str, list[Any]]:
    """RLlib callback events -> rlgraft's hooks for this schedule (appended after the restore's)."""
    if not plan.active:
        return {}
    report_dir = storage.join(output_dir, "transfer") if output_dir else None
    frozen = Frozen(plan, report_dir)
    out: dict[str, list[Any]] = {"on_algorithm_init": [frozen.start], "on_checkpoint_loaded": [frozen.start],
                                 "on_train_result": [frozen]}
    if plan.selfplay_from:
        out["on_train_result"].append(SelfPlay(plan, report_dir))
    return out


def events(output_dir: str | None) -> list[dict[str, Any]]:
    """Thaw and snapshot events of a run, in order (for summary.json)."""
    if not output_dir:
        return []
    folder = storage.at(storage.join(output_dir, "transfer"))
    rows = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted(rows, key=lambda r: (r.get("iteration", 0), r.get("event", "")))
