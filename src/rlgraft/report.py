"""Run summaries: summary.json, the closing lines a person reads, and the resume command."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

KEY_METRICS = ("training_iteration", "num_env_steps_sampled_lifetime", "time_total_s")


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


def resume_command(checkpoint: str, extra: str = "") -> str:
    """A shell-safe command; the inner quotes keep Hydra from splitting paths with '=' or ','."""
    arg = shlex.quote(f'+resume="{checkpoint}"')
    return f"python -m experiments.run {extra + ' ' if extra else ''}{arg}"


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
