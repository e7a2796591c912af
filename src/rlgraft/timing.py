"""Phase timestamps for `bench/startup.py`: with RLGRAFT_TIMING=FILE, each phase appends its `time.time()`.

Off (no file, no callbacks, nothing printed) unless the variable is set. Trial processes inherit it
from the driver through the local Ray runtime, so the driver, the Tune trial and its EnvRunners all
write to the one file: `<time.time()> <pid> <phase>` per line, appended (one small write each).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

ENV = "RLGRAFT_TIMING"
_once: set[str] = set()


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def mark(phase: str, at: float | None = None, once: bool = False) -> None:
    """Append `phase` with the time now (or `at`); `once`: only its first mark in this process."""
    path = os.environ.get(ENV)
    if not path or (once and phase in _once):
        return
    _once.add(phase)
    with open(path, "a") as fh:
        fh.write(f"{time.time() if at is None else at:.4f} {os.getpid()} {phase}\n")


def process_start() -> float:
    """This process's start time (Linux /proc), as `time.time()` would have read it then."""
    with open("/proc/self/stat") as fh:
        ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Mark:
    """An RLlib callback that marks a phase (pickled into the trial by reference, like every hook)."""

    phase: str
    once: bool = True

    def __call__(self, **kwargs: Any) -> None:
        if self.phase == "env created":  # the first env of this process: when did the process start?
            mark("trial process started", at=process_start(), once=True)
        mark(self.phase, once=self.once)


def hooks() -> dict[str, Mark]:
    """RLlib callbacks for the trial's phases: env built, algorithm built, first episode, each result."""
    return {"on_environment_created": Mark("env created"), "on_algorithm_init": Mark("algorithm built"),
            "on_episode_start": Mark("first episode started"), "on_train_result": Mark("result", once=False)}
