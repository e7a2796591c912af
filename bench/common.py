"""Timing helpers shared by the benchmark scripts: whole processes, alternated, medians."""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_logged(cmd: list[str], cwd: Path = ROOT) -> str:
    """Run to exit; its stdout, or exit with its stderr if it failed."""
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return res.stdout


def timed(cmd: list[str], cwd: Path = ROOT) -> float:
    """Wall seconds from process start to exit; raises if the command fails."""
    start = time.perf_counter()
    run_logged(cmd, cwd)
    return time.perf_counter() - start


def alternate(named: dict[str, list[str]], pairs: int) -> dict[str, list[float]]:
    """Run each command once per round, in turn, so drift hits all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in named}
    for i in range(pairs):
        for name, cmd in named.items():
            times[name].append(timed(cmd))
            print(f"round {i + 1}: {name:>10} {times[name][-1]:7.2f} s", flush=True)
    return times


def summary(times: dict[str, list[float]]) -> dict[str, float]:
    out = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        out[name] = med
        print(f"{name:>10}: median {med:7.2f} s  min {min(ts):7.2f}  max {max(ts):7.2f}  n={len(ts)}")
    return out


def machine() -> str:
    import os

    return f"{platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}, {sys.platform}"
