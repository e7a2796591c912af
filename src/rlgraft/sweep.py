"""Sweep reports: one row per job (sweep.csv, sweep.md) and return-vs-steps plots, seeds aggregated."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rlgraft import storage
from rlgraft.errors import RlgraftError

COLUMNS = ["job", "overrides", "status", "metric", "value", "env_steps", "iterations", "wall_s", "checkpoint",
           "error"]


def job_dirs(root: Path) -> list[Path]:
    if (root / "summary.json").is_file():
        return [root]
    jobs = [d for d in root.iterdir() if d.is_dir() and ((d / "summary.json").is_file() or (d / ".hydra").is_dir())]
    return sorted(jobs, key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name))


def overrides_of(job: Path) -> list[str]:
    f = job / ".hydra" / "overrides.yaml"
    if not f.is_file():
        return []
    import yaml

    return [str(o) for o in yaml.safe_load(f.read_text()) or []]


def rows(root: Path) -> list[dict[str, Any]]:
    out = []
    for job in job_dirs(root):
        s = json.loads((job / "summary.json").read_text()) if (job / "summary.json").is_file() else {}
        metric = s.get("metric", "")
        value = (s.get("metrics") or {}).get(metric)
        out.append({
            "job": job.name, "overrides": " ".join(overrides_of(job)),
            "status": s.get("status", "unfinished"), "metric": metric,
            "value": round(value, 3) if isinstance(value, int | float) else None,
            "env_steps": s.get("env_steps"), "iterations": s.get("iterations"), "wall_s": s.get("wall_s"),
            "checkpoint": s.get("checkpoint"), "error": s.get("error"), "_path": str(job),
            "_trials": [t.get("path") for t in s.get("trials", [])],
        })
    return out


def label_varying(all_rows: list[dict[str, Any]]) -> None:
    """`label`: only the overrides that differ between jobs (the rest is shown once in sweep.md)."""
    common = set.intersection(*[set(r["overrides"].split()) for r in all_rows]) if all_rows else set()
    for r in all_rows:
        r["label"] = " ".join(o for o in r["overrides"].split() if o not in common) or "(same as all)"


def curves(row: dict[str, Any], metric: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(env steps, metric) per trial of a job, from Tune's progress.csv."""
    out = []
    for trial in row["_trials"]:
        f = storage.at(trial) / "progress.csv"  # the trial's folder, locally or in object storage
        if not f.is_file():
            continue
        data = list(csv.DictReader(io.StringIO(f.read_text())))
        pts = [(float(r["num_env_steps_sampled_lifetime"]), float(r[metric])) for r in data
               if r.get(metric) not in (None, "", "nan") and r.get("num_env_steps_sampled_lifetime")]
        if pts:
            x, y = zip(*pts, strict=True)
            out.append((np.asarray(x), np.asarray(y)))
    return out


def group_key(overrides: str) -> str:
    """Jobs that differ only in their seed are one configuration."""
    return " ".join(o for o in overrides.split() if not o.lstrip("+").startswith("seed=")) or "(defaults)"


def plot(all_rows: list[dict[str, Any]], out: Path, metric: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(8, 5))
    for row in all_rows:
        for x, y in curves(row, metric):
            ax.plot(x, y, alpha=0.8, label=f"job {row['job']}: {row['label']}"[:80])
    files.append(_save(fig, ax, out / "returns_per_job.png", metric, "return vs env steps, per job"))

    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for row in all_rows:
        groups.setdefault(group_key(row["label"]), []).extend(curves(row, metric))
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, runs in groups.items():
        if not runs:
            continue
        grid = np.linspace(max(r[0][0] for r in runs), min(r[0][-1] for r in runs), 50)
        ys = np.stack([np.interp(grid, x, y) for x, y in runs])
        mean = ys.mean(axis=0)
        ax.plot(grid, mean, label=f"{name} (n={len(runs)})"[:70])
        if len(runs) > 1:
            half = 1.96 * ys.std(axis=0, ddof=1) / math.sqrt(len(runs))  # 95% normal band on the mean
            ax.fill_between(grid, mean - half, mean + half, alpha=0.25)
    files.append(_save(fig, ax, out / "returns_by_config.png", metric, "mean over seeds with 95% band"))
    return files


def _save(fig: Any, ax: Any, path: Path, metric: str, title: str) -> str:
    import matplotlib.pyplot as plt

    ax.set(xlabel="env steps", ylabel=metric, title=title)
    if ax.lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def build(root: str | Path) -> dict[str, Any]:
    """Write sweep.csv, sweep.md and PNG plots into `root` (a run or multirun dir)."""
    r = Path(root).resolve()
    if not r.is_dir():
        raise RlgraftError(f"`{r}` is not a directory", fix="pass a run or multirun output dir")
    all_rows = rows(r)
    if not all_rows:
        raise RlgraftError(f"`{r}` holds no rlgraft jobs (no summary.json, no .hydra job dirs)",
                           fix="pass outputs/DATE/TIME or multirun/DATE/TIME")
    with (r / "sweep.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(all_rows)
    metric = next((row["metric"] for row in all_rows if row["metric"]), "env_runners/episode_return_mean")
    label_varying(all_rows)
    common = sorted(set.intersection(*[set(row["overrides"].split()) for row in all_rows]))
    lines = [f"# Sweep {r}", "", f"metric: `{metric}`", "", f"overrides of every job: `{' '.join(common)}`", "",
             "| job | overrides | status | value | env steps | iterations | wall s | checkpoint or error |",
             "|---|---|---|---|---|---|---|---|"]
    for row in all_rows:
        lines.append(f"| {row['job']} | `{row['label']}` | {row['status']} | {row['value']} | "
                     f"{row['env_steps']} | {row['iterations']} | {row['wall_s']} | "
                     f"{row['checkpoint'] or row['error'] or ''} |")
    plots = plot(all_rows, r, metric)
    lines += ["", *[f"![{Path(p).stem}]({Path(p).name})" for p in plots]]
    (r / "sweep.md").write_text("\n".join(lines) + "\n")
    failed = [row["job"] for row in all_rows if row["status"] != "ok"]
    return {"dir": str(r), "jobs": len(all_rows), "failed": failed, "plots": plots,
            "csv": str(r / "sweep.csv"), "md": str(r / "sweep.md")}


class SweepReport(Callback):
    """Hydra callback: after a multirun, write the sweep report; exit non-zero if a job failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.utils import to_absolute_path

        result = build(to_absolute_path(config.hydra.sweep.dir))
        print(f"rlgraft: sweep report {result['md']} ({result['jobs']} jobs, {len(result['failed'])} failed)")
        if config.get("logger", {}).get("mlflow"):
            from rlgraft.tracking import log_sweep_plots

            for missed in log_sweep_plots(result["dir"], result["plots"]):
                print(f"rlgraft: warning: the sweep plots did not reach MLflow run {missed}")
        if result["failed"]:
            raise SystemExit(f"rlgraft: jobs {', '.join(result['failed'])} failed; see {result['md']}")
