"""A Tune experiment whose own state a crash cut short (ray issue 58179: a kill -9 while Tune rewrote
`tuner.pkl` or `experiment_state-*.json` left it empty or half-written), while its trials' checkpoints are
intact: the same command again goes on from the last checkpoint instead of ending in `EOFError`.

A single-trial run goes on in a new Tune experiment beside the broken one (`NAME-continued-1`, ...), whose
trial starts with a verified full restore of the last checkpoint (counters included, so the stop is still a
total); the broken folder is left as it is. A run of several trials (a search) cannot be put back trial by
trial this way: the error names the broken file and the command that goes on from the last checkpoint.
"""

from __future__ import annotations

import json
import pickletools
from dataclasses import replace
from typing import Any

from rlgraft import discovery, storage
from rlgraft.errors import RlgraftError
from rlgraft.schema import Budget, Config, Pick

SUFFIX = "-continued-"


def state_problem(experiment: str) -> str | None:
    """What is wrong with a Tune experiment folder's own state, or None if Tune can restore it (or it holds
    no state at all: a run that never got that far starts afresh)."""
    root = storage.at(experiment)
    if storage.is_uri(experiment):
        storage.forget()
        root.list_tree()
    tuner = root / "tuner.pkl"
    if not root.is_dir():
        return None
    if not tuner.is_file():
        has_checkpoints = any(p.name == "rllib_checkpoint.json" for p in root.rglob("rllib_checkpoint.json"))
        return f"`{tuner}` is missing" if has_checkpoints else None
    data = tuner.read_bytes()
    try:
        for _ in pickletools.genops(data):
            pass
    except Exception as exc:  # empty or cut short: EOFError, ValueError
        return f"`{tuner}` is broken ({type(exc).__name__}: {exc or 'empty'}; {len(data)} bytes)"
    for state in root.glob("experiment_state-*.json"):
        try:
            json.loads(state.read_text())
        except ValueError as exc:
            return f"`{state}` is broken ({exc})"
    return None


def chain(storage_path: str, name: str) -> list[str]:
    """The experiment and its continuations that exist, oldest first."""
    out = [name]
    i = 1
    while storage.at(storage.join(storage_path, f"{name}{SUFFIX}{i}")).is_dir():
        out.append(f"{name}{SUFFIX}{i}")
        i += 1
    return out


def plan(c: Config, storage_path: str, name: str, printer: Any = print) -> tuple[Config, str]:
    """(config, experiment name) to run: as they are, or, when the latest experiment's state is broken, a
    config that fully restores the last checkpoint of the run's trial into a new experiment."""
    if storage.is_uri(storage_path):
        storage.forget()
    names = chain(storage_path, name)
    latest = storage.join(storage_path, names[-1])
    problem = state_problem(latest)
    if problem is None:
        return c, names[-1]
    per_experiment = [discovery.candidates(storage.at(storage.join(storage_path, n)), c.metric) for n in names]
    cands = [cand for found in per_experiment for cand in found]
    # the trials of one experiment (each continuation has the one trial of the experiment before it)
    trials = max(({str(storage.at(cand.path).parent) for cand in found} for found in per_experiment), key=len)
    if not cands:
        printer(f"rlgraft: {problem}, and no trial saved a checkpoint: starting the experiment again")
        return c, names[-1]
    last = max(cands, key=lambda cand: (cand.iteration, cand.mtime))
    if len(trials) > 1:
        raise RlgraftError(
            f"Tune's own state of the experiment `{latest}` is cut short: {problem}",
            found=f"{len(trials)} trials' checkpoints are intact, the latest at iteration {last.iteration}",
            fix="go on from them in a new output dir, e.g. with the same overrides and "
                f"'+resume=\"{latest}\"' restore.pick=latest (or restore.pick=best), or delete the broken file to "
                "start the experiment over")
    following = f"{name}{SUFFIX}{len(names)}"
    printer(f"rlgraft: Tune's state of {latest} is cut short ({problem}); the trial's checkpoints are intact: "
            f"going on from {last.path} (iteration {last.iteration}) in the Tune experiment {following}")
    restore = replace(c.restore, modules=None, components=None, params=[], accept=[], optimizer=None,
                      dry_run=False, budget=Budget.total, pick=Pick.latest)
    return replace(c, resume=last.path, restore=restore), following
