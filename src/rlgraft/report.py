"""Run summaries: summary.json, the closing lines a person reads, and the resume command."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from rlgraft import storage
from rlgraft.configs import reports_dir

if TYPE_CHECKING:
    from rlgraft.restore import RestorePlan
    from rlgraft.schema import Config
    from rlgraft.tuning import TrialOutcome

# How a user starts a run; a checkout's `python -m experiments.run` passes its own.
PROGRAM = "rlgraft run"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def resume_command(checkpoint: str, extra: str = "", program: str = PROGRAM) -> str:
    """A shell-safe command; the inner quotes keep Hydra from splitting paths with '=' or ','."""
    arg = shlex.quote(f'+resume="{checkpoint}"')
    return f"{program} {extra + ' ' if extra else ''}{arg}"


def write_summary(output_dir: str, summary: dict[str, Any]) -> Path:
    path = Path(output_dir) / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(summary), indent=2, sort_keys=False))
    tmp.replace(path)  # atomic: a crash never leaves half a summary behind
    return path


def read_summary(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    return dict(json.loads((p / "summary.json" if p.is_dir() else p).read_text()))


def closing_lines(summary: dict[str, Any]) -> list[str]:
    lines = [f"rlgraft: {summary['status']} after {summary['iterations']} iterations, "
             f"{summary['env_steps']} env steps, {summary['wall_s']:.1f} s"]
    metric = summary.get("metric")
    if metric and summary["metrics"].get(metric) is not None:
        lines.append(f"  {metric} = {summary['metrics'][metric]:.2f}")
    if summary.get("checkpoint"):
        lines.append(f"  checkpoint: {summary['checkpoint']}")
        lines.append(f"  resume:     {summary.get('resume_command') or resume_command(summary['checkpoint'])}")
    lines.append(f"  summary:    {summary['output_dir']}/summary.json")
    return lines


def summarize(c: Config, outcomes: list[TrialOutcome], restore_plan: RestorePlan | None, wall_s: float,
              experiment_path: str) -> dict[str, Any]:
    """summary.json's content: the best trial by `metric`, every trial, the restore and the config."""
    sign = 1.0 if c.mode == "max" else -1.0

    def score(o: Any) -> float:
        v = o.metrics.get(c.metric)
        return sign * v if isinstance(v, int | float) and v == v else float("-inf")

    ok = [o for o in outcomes if o.status != "ERROR"] or outcomes
    best = max(ok, key=score) if ok else None
    folder = storage.at(storage.join(reports_dir(c), "restore"))
    reports = sorted(folder.glob("restore-*.json"), key=str) if folder.is_dir() else []
    return {
        "status": "ok" if best is not None and best.status != "ERROR" else "error",
        "checkpoint": best.checkpoint if best else None,
        "env_steps": int(best.metrics.get("num_env_steps_sampled_lifetime", 0)) if best else 0,
        "iterations": int(best.metrics.get("training_iteration", 0)) if best else 0,
        "wall_s": round(wall_s, 2),
        "metric": c.metric,
        "metrics": best.metrics if best else {},
        "trials": [{"trial_id": o.trial_id, "path": o.path, "checkpoint": o.checkpoint,
                    "status": o.status, "error": o.error, "config": o.config,
                    "env_steps": int(o.metrics.get("num_env_steps_sampled_lifetime", 0)),
                    "iterations": int(o.metrics.get("training_iteration", 0)),
                    "metrics": o.metrics} for o in outcomes],
        "output_dir": c.output_dir,
        "experiment_path": experiment_path,
        "restore": ({**restore_plan.summary(),
                     "reports": [json.loads(p.read_text()) for p in reports]} if restore_plan else None),
        "config": OmegaConf.to_container(OmegaConf.structured(c), resolve=True, enum_to_str=True),
    }
