"""What a PATH means: the checkpoint it is, or the one chosen among those in a Tune trial or
experiment folder or an rlgraft run folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlgraft import storage
from rlgraft.checkpoints import counters_of, is_algorithm_checkpoint, read_json
from rlgraft.errors import RlgraftError


@dataclass
class Candidate:
    path: str
    iteration: int
    metric: float | None = None
    mtime: float = 0.0


def _results_by_iteration(trial_dir: Any, metric: str) -> dict[int, float]:
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


def candidates(root: Any, metric: str, max_depth: int = 6) -> list[Candidate]:
    """Every algorithm checkpoint under `root` (or `root` itself), with its iteration and metric."""
    found: list[Any] = []
    if is_algorithm_checkpoint(root):
        found = [root]
    else:
        summary = root / "summary.json"
        if summary.is_file():
            data = read_json(summary)  # an rlgraft run or multirun job: every checkpoint of its trials
            trial_dirs = [storage.at(t["path"]) for t in data.get("trials", []) if t.get("path")]
            found = [ck for d in trial_dirs for ck in _walk(d, 1)]
            if not found and data.get("checkpoint") and is_algorithm_checkpoint(storage.at(data["checkpoint"])):
                found = [storage.at(data["checkpoint"])]
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


def _walk(root: Any, depth: int) -> list[Any]:
    if depth < 0 or not root.is_dir():
        return []
    if is_algorithm_checkpoint(root):
        return [root]
    out: list[Any] = []
    for child in sorted(root.iterdir(), key=str):
        if child.is_dir() and not child.name.startswith("."):
            out += _walk(child, depth - 1)
    return out


def resolve(path: str, *, base: str, pick: str = "latest", metric: str = "", mode: str = "max") -> tuple[str, str]:
    """PATH in any accepted form -> (absolute checkpoint dir, how it was chosen)."""
    if storage.is_uri(path):
        storage.check_reachable(path)
        p: Any = storage.at(path).list_tree()  # one listing of the prefix answers the walk below
    else:
        p = Path(path).expanduser()
        p = (Path(base) / p) if not p.is_absolute() else p
        p = p.resolve()
    if not p.exists() and storage.is_uri(path):
        raise RlgraftError(f"nothing is stored under `{p}`: no object has this prefix",
                           fix="check the URI against the bucket's listing (e.g. `aws s3 ls` with the same "
                               "AWS_ENDPOINT_URL); a run prints the URI of its checkpoint and its resume command")
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



def given(c: Any) -> str:
    """The checkpoint an evaluate/export config names (`+checkpoint=PATH`), resolved as `+resume` is."""
    import os

    if not c.checkpoint:
        raise RlgraftError("no checkpoint given", fix="add +checkpoint=PATH")
    ck, _ = resolve(c.checkpoint, base=os.getcwd(), pick=c.pick.value, metric=c.metric)
    return ck
