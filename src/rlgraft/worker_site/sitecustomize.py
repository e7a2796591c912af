"""Imported by Python at start-up in the processes of a local Ray runtime that rlgraft started
(`rlgraft.runtime.warm_workers` puts this folder on their PYTHONPATH).

In a Ray worker process that Ray started with the runtime (`default_worker.py`, idle at first),
the modules named in RLGRAFT_WARM_IMPORTS (RLlib and the algorithm: 4-6 s of CPU here) are imported
right after the worker has registered with its raylet, in its main thread, before it runs its first
task (a wrapped `Worker.main_loop`). Ray starts one idle worker per CPU as the runtime comes up; a
Tune trial or an EnvRunner placed on one then finds RLlib imported, or being imported, instead of
importing it only once the trial has started. No task runs while a worker imports: an import thread
beside a main thread running tasks failed with "partially initialized module ray.tune.experiment" when
a W&B logging actor imported Tune at the same time.
With RLGRAFT_WARM_FIRST=LOCKFILE (set by `rlgraft.runtime` for a runtime it starts), the first idle
worker to lock the file imports alone; the others register 0.5 s later and import once it is done,
at the idle CPU priority.
The raylet leases the idle worker that registered first (measured: the trial ran in the first one in
every run; with the first registering last it ran in the other), so the trial's import has a CPU to
itself instead of sharing two with an import no trial may use (a single trial that samples in its own
process uses one worker). RLGRAFT_WARM_TOGETHER=1 in the driver: every idle worker at once, as before.
Every other process (the driver, Ray's agents, anything the user starts) only runs the next
`sitecustomize` on the path, if there is one, as Python would have.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import time

_WITH_RUNTIME_S = float(os.environ.get("RLGRAFT_WARM_WINDOW_S", "20"))  # after the raylet's start
_REGISTER_AFTER_FIRST_S = 0.5  # the others' delay, so the first registers first
_WAIT_FOR_FIRST_S = 40.0  # well inside the raylet's 60 s for a started worker to register


def _warm() -> None:
    names = [n for n in os.environ.get("RLGRAFT_WARM_IMPORTS", "").split(",") if n]
    if not names or not sys.argv or not sys.argv[0].endswith("default_worker.py") or not _idle_at_start():
        return
    lock = _first_lock()
    if lock is None and os.environ.get("RLGRAFT_WARM_FIRST"):
        time.sleep(_REGISTER_AFTER_FIRST_S)  # register after the first: the raylet leases the oldest idle one
    import ray._private.worker as ray_worker  # default_worker.py imports it next anyway

    task_loop = ray_worker.Worker.main_loop

    def main_loop(self):  # type: ignore[no-untyped-def]
        """Registered with the raylet already (`connect` comes first); tasks wait until this returns."""
        if lock is None and _wait_for_first():
            _import_quietly(names)
        else:
            _import(names)
        if lock is not None:
            os.close(lock)  # the other idle workers go on
        ray_worker.Worker.main_loop = task_loop  # type: ignore[method-assign]
        return task_loop(self)

    ray_worker.Worker.main_loop = main_loop  # type: ignore[method-assign]


def _import(names: list[str]) -> None:
    start = time.time()
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001  (imported again where it is used, and reported there)
            break
    path = os.environ.get("RLGRAFT_TIMING")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{start:.4f} {os.getpid()} worker warm-up started\n"
                     f"{time.time():.4f} {os.getpid()} worker warmed\n")


def _import_quietly(names: list[str]) -> None:
    """After the first worker's import: in a thread at the idle CPU priority (SCHED_IDLE), which runs only
    on a CPU nothing else wants, so the trial that has just started in the first worker (two busy threads
    while it trains, measured) keeps both CPUs. The main thread waits for it: one import at a time, and no
    task runs before it is done; its own scheduling is left as it is."""
    import threading

    def run() -> None:
        with contextlib.suppress(OSError, AttributeError):  # the policy of this thread only (Linux)
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        _import(names)

    thread = threading.Thread(target=run, name="rlgraft-warm-up", daemon=True)
    thread.start()
    thread.join()


def _open_lock() -> int | None:
    """The RLGRAFT_WARM_FIRST lock file, open; None when no idle worker warms alone."""
    path = os.environ.get("RLGRAFT_WARM_FIRST")
    if not path:
        return None
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None


def _locked(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _first_lock() -> int | None:
    """The open, locked file when this is the first idle worker to take it (held until its import ends)."""
    fd = _open_lock()
    if fd is None or _locked(fd):
        return fd
    os.close(fd)
    return None


def _wait_for_first() -> bool:
    """Until the first idle worker's import is done (its lock is free), so the two do not share the CPUs;
    False when there is no first worker to wait for."""
    fd = _open_lock()
    if fd is None:
        return False
    deadline = time.monotonic() + _WAIT_FOR_FIRST_S
    while not _locked(fd) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.close(fd)
    return True


def _started_at(pid: int | str) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")


def _idle_at_start() -> bool:
    """One of the idle workers Ray starts with its runtime (within _WITH_RUNTIME_S of the raylet, this
    process's parent). A worker started later is started for a task already waiting, which imports
    what it needs at once: warming it at the lowest priority would only slow that import down."""
    try:
        return _started_at("self") - _started_at(os.getppid()) < _WITH_RUNTIME_S
    except (OSError, ValueError, IndexError):
        return False


def _chain() -> None:
    """Run the `sitecustomize` this folder hides, if any (Debian's, a venv's own)."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_chain()
_warm()
