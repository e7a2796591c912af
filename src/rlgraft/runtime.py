"""The Ray runtime: started once per process (or connected to a cluster), and resources fitted to it."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Any, NoReturn

from rlgraft import timing
from rlgraft.errors import RlgraftError
from rlgraft.schema import Config, RayConfig

log = logging.getLogger(__name__)


# Modules each worker of a local runtime started here imports as it starts (`worker_site/sitecustomize.py`).
WARM_ENV = "RLGRAFT_WARM_IMPORTS"
# A lock file: the first idle worker to take it warms up alone (`first_warms_alone`).
FIRST_ENV = "RLGRAFT_WARM_FIRST"
# The runtime this process started itself (not one it joined): only that one may be left to Ray's reaper.
_started_here: list[bool] = []
# A start under way in the background (`start_early`): set when ray.init returned, and its error.
_early: list[tuple[threading.Event, list[BaseException]]] = []


def address_of(ray_cfg: RayConfig) -> str | None:
    """The cluster to join: `ray.address` (ray=cluster), else the RAY_ADDRESS variable; None: a local runtime.

    ray.init() without an address joins whatever cluster `ray start` last left on this machine (its
    address file outlives it): a local run passes address="local", which always starts its own runtime.
    "local" given either way is Ray's word for that runtime, not a cluster: it keeps the local run's
    warm workers and resource fitting (it had read as a cluster, and the trial imported RLlib cold)."""
    return _cluster(ray_cfg.address) or _cluster(os.environ.get("RAY_ADDRESS"))


def _cluster(address: str | None) -> str | None:
    return address if address and address.strip().lower() != "local" else None


def environment_address(ray_cfg: RayConfig) -> str | None:
    """RAY_ADDRESS when it, not the config, makes this run join a cluster (the run says so in its first
    line); the rlgraft launcher's own jobs set it to the launcher's runtime and are not told."""
    if ray_cfg.address or os.environ.get("RLGRAFT_CONCURRENT_JOBS"):
        return None
    return _cluster(os.environ.get("RAY_ADDRESS"))


def _init_kwargs(ray_cfg: RayConfig, alone: bool = False) -> dict[str, Any]:
    """ray.init's arguments; for a runtime started here, its workers are set to warm up as they start
    (`alone`: the first one alone, for a run that needs one worker at its start: `one_worker_at_start`)."""
    address = address_of(ray_cfg)
    kwargs: dict[str, Any] = dict(address=address or "local", include_dashboard=ray_cfg.include_dashboard,
                                  logging_level=ray_cfg.logging_level, log_to_driver=ray_cfg.log_to_driver)
    if not address and ray_cfg.warm_imports:
        warm_workers(list(ray_cfg.warm_imports))
        first_warms_alone(alone and os.environ.get("RLGRAFT_WARM_TOGETHER") != "1" and workers_warm())
        if os.environ.get("RLGRAFT_PRESTART") != "0":
            kwargs["_system_config"] = PRESTART
    return kwargs


# Ray starts a local runtime's idle workers when the first driver registers, at the end of `ray.init`;
# with this, as soon as the raylet is up (its own `--num_prestart_python_workers`, one per CPU), 0.7 s
# earlier here (medians of 5, BENCHMARKS.md), so their warm-up import starts earlier too. They serve the
# driver's job as the others would (its sys.path, working directory and environment; measured).
# RLGRAFT_PRESTART=0: Ray's default.
PRESTART = {"enable_worker_prestart": True}


def warm_workers(modules: list[str]) -> None:
    """Have every worker of the local runtime about to start import `modules` as it starts.

    Ray starts one idle worker per CPU with the runtime; a Tune trial or an EnvRunner placed on one
    then skips RLlib's import (5-6 s here), which otherwise starts only once the trial does. Ray's
    workers inherit this process's environment, so `rlgraft/worker_site` goes first on PYTHONPATH
    and its `sitecustomize` does the imports in worker processes only, before their task loop.
    Tune gives every trial actor a runtime_env (`PL_DISABLE_FORK=1`), which no idle worker matches;
    set here in the environment instead, `tuning.fit` leaves it out of the trial's runtime_env, so a
    trial can use an idle worker.
    The idle workers no trial takes (Ray keeps one per CPU) cost CPU and memory (~0.37 GB each,
    measured). At the lowest CPU priority the imports were slower on the whole: the default run's
    first env step came at 14.0 s instead of 12.5 s, and concurrent sweep jobs waited on them.
    """
    if not modules or WARM_ENV in os.environ:
        return
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:  # the workers would skip them silently
        raise RlgraftError(f"ray.warm_imports names packages that are not installed: {', '.join(missing)}",
                           fix="list importable modules (e.g. ray.rllib.algorithms.ppo), or ray.warm_imports=[]")
    site = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_site")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)
    os.environ[WARM_ENV] = ",".join(modules)
    os.environ.setdefault("PL_DISABLE_FORK", "1")


def first_warms_alone(alone: bool) -> None:
    """For the runtime about to start: its first idle worker imports alone and registers first, which is
    the one Ray leases first (the trial's); the others register 0.5 s later and import after it, at the
    lowest CPU priority (`worker_site/sitecustomize.py`). Measured on 2 CPUs: both idle workers importing
    at once, beside the driver and Ray's own processes, took 5-6 s each instead of ~4 s, and a single
    trial that samples in its own process uses one of them. A run that starts more workers at once (remote
    EnvRunners, concurrent trials or sweep jobs) has them all import at once, as before."""
    os.environ.pop(FIRST_ENV, None)
    if not alone:
        return
    import atexit
    import tempfile

    fd, path = tempfile.mkstemp(prefix="rlgraft-warm-", suffix=".lock")
    os.close(fd)
    os.environ[FIRST_ENV] = path
    atexit.register(_remove, path)


def one_worker_at_start(cfg: Config) -> bool:
    """The run starts one trial that samples and learns in its own process: a local runtime, one trial at a
    time, no remote EnvRunners (given, or as `fit` sizes them) and no remote learners."""
    from rlgraft import algorithms, search

    if address_of(cfg.ray) or cfg.algo.name not in algorithms.IN_ONE_PROCESS or cfg.algo.learners.get("num_learners"):
        return False
    trials = search.num_trials(cfg)
    concurrent = min(trials, cfg.resources.max_concurrent_trials or trials)
    cpus = float(cfg.ray.num_cpus or os.cpu_count() or 1)
    return concurrent == 1 and env_runners(cfg, cpus, concurrent) == 0


def env_runners(cfg: Config, cpus: float, concurrent: int) -> int:
    """EnvRunners per trial: `algo.env_runners.num_env_runners`, or when unset `min(max_env_runners, CPUs per
    trial - 1)`, and 0 (sampling in the trial) where that would be a single runner."""
    explicit = cfg.algo.env_runners.get("num_env_runners")
    if explicit is not None:
        return int(explicit)
    per_trial = max(1.0, cpus / max(concurrent, 1))
    runners = int(max(0, min(cfg.resources.max_env_runners, per_trial - 1)))
    # PPO samples, then learns: one remote runner adds a process and weight syncs but no
    # parallelism, so sample in the trial itself unless two or more runners fit (measured:
    # the default run starts its first iteration ~4 s sooner with 0 runners on 2 CPUs).
    return 0 if runners < 2 else runners


@dataclass(frozen=True)
class TorchThreads:
    """`on_algorithm_init`: torch's intra-op threads in every process that samples or learns (`resources.
    torch_threads`). Measured on this 2-vCPU VM, a trial sampling 10 Pendulum envs and learning in its own
    process ran its iterations faster with 1 thread than with torch's 2: with small batches the second
    thread spins between operations (top: 1.8 CPUs busy for one process) and gains nothing."""

    threads: int

    def __call__(self, *, algorithm: Any, **kwargs: Any) -> None:
        from rlgraft import checkpointable

        n = self.threads

        def apply() -> None:
            import torch

            torch.set_num_threads(n)

        checkpointable.in_every_process(algorithm, apply)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def workers_warm() -> bool:
    """The runtime's workers warm up and have PL_DISABLE_FORK set (see `warm_workers`): a local one
    started by this process, or by the process that spawned it and handed down its environment."""
    return WARM_ENV in os.environ and os.environ.get("PL_DISABLE_FORK") == "1"


def start_early(ray_cfg: RayConfig, alone: bool = False) -> bool:
    """Start the local runtime in a background thread while the driver goes on checking the config
    (the CLI only: `rlgraft.run` itself starts nothing before its checks pass). `connect` joins it.

    The thread stays alive after `ray.init` returns: Ray starts its GCS and raylet with
    PR_SET_PDEATHSIG, which fires when the *thread* that started them ends, not the process.
    """
    if address_of(ray_cfg) or _early:
        return False
    quiet()
    import ray

    if ray.is_initialized():
        return False
    kwargs = _init_kwargs(ray_cfg, alone)
    if ray_cfg.num_cpus is not None:
        kwargs["num_cpus"] = ray_cfg.num_cpus
    errors: list[BaseException] = []
    started = threading.Event()

    def start() -> None:
        try:
            ray.init(**kwargs)
            timing.mark("ray.init done in the background")
        except BaseException as exc:  # connect() starts again in the main thread and reports it
            errors.append(exc)
        started.set()
        threading.Event().wait()  # keep the parent thread of Ray's processes alive (see above)

    # What ray.init does in the main thread only: SIGTERM ends the driver (and atexit shuts Ray down).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
    logging.getLogger("ray._private.worker").addFilter(_NotMainThreadWarning())
    threading.Thread(target=start, name="rlgraft-ray-init", daemon=True).start()
    _early.append((started, errors))
    timing.mark("ray.init started")
    return True


class _NotMainThreadWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "not the main thread" not in record.getMessage()


def wait_early() -> None:
    """Wait for a background start; if it failed, `connect` starts again and reports the error."""
    for done, errors in _early:
        done.wait()
        for exc in errors:
            log.warning("rlgraft: starting Ray in the background failed (%s); starting it again", exc)
        errors.clear()


def exit_now(code: int) -> NoReturn:
    """Exit at once: end the local runtime this process started with SIGKILL, without the wait.

    `ray.shutdown` stops Ray's processes one by one with up to 1 s grace each (1.4-3.5 s measured at
    the end of every run). Left alone, the GCS, raylet and the other processes `ray.init` started die
    with the driver (PR_SET_PDEATHSIG=SIGKILL, `ray/_private/services.py`), but the raylet's children
    (DashboardAgent, RuntimeEnvAgent) were measured still running a minute later. So every process of
    Ray's tree is sent SIGKILL, as PR_SET_PDEATHSIG and Ray's reaper would, and nothing else (a
    tracker's own process stays). Everything that matters is on disk before this is called (Tune's
    results and checkpoints, summary.json). Every other `atexit` hook (MLflow's and W&B's run
    clean-up, Tune's registry) still runs first. A refused input exits here too, possibly while a
    background start is under way. RLGRAFT_CLEAN_SHUTDOWN=1 (or no /proc): `ray.shutdown` as usual.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    # A background start interrupted by the exit (a refusal right after Ray began starting) can raise in its
    # thread while it forks; that is not the user's error, and the one paragraph stays the only output.
    sys.unraisablehook = lambda unraisable: None
    pids = _ray_processes() if (_started_here or _early) else []
    if not pids or os.environ.get("RLGRAFT_CLEAN_SHUTDOWN") == "1":
        wait_early()
        sys.exit(code)  # the usual exit: atexit's ray.shutdown
    import atexit

    import ray

    atexit.unregister(ray.shutdown)  # the slow part: Ray's processes are ended below instead
    atexit._run_exitfuncs()  # the rest still runs, with Ray up: trackers' and Tune's own exit hooks
    logging.shutdown()
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    os._exit(code)


def _ray_processes() -> list[int]:
    """The processes Ray's node started in this driver, and all their descendants (Linux /proc)."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    if node is None or not os.path.isdir("/proc"):
        return []
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry}/stat") as fh:
                parent_of[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
    tree = {info.process.pid for infos in node.all_processes.values() for info in infos
            if getattr(info, "process", None) is not None}
    grew = True
    while grew:
        more = {pid for pid, ppid in parent_of.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    tree.discard(os.getpid())
    return sorted(tree)


def connect(ray_cfg: RayConfig, alone: bool = False) -> tuple[dict[str, float], str]:
    """Start or join a Ray runtime once per process: (cluster resources, "started"|"connected"|"reused").

    A second `ray.init` in one process raises, and multirun jobs share a process, so an existing
    runtime is reused.
    """
    quiet()
    import ray

    wait_early()
    how = "reused"
    if _early and ray.is_initialized() and not _started_here:
        how = "started"  # in the background, by start_early
        _started_here.append(True)
    if not ray.is_initialized():
        address = address_of(ray_cfg)
        named = f"ray.address={address!r}" if ray_cfg.address else f"RAY_ADDRESS={address!r}"
        how = "started" if not address else f"connected ({named})"
        kwargs: dict[str, Any] = _init_kwargs(ray_cfg, alone)
        if address:
            kwargs.pop("include_dashboard")
            check_reachable(address, named)
            use_token_if_present()
        elif ray_cfg.num_cpus is not None:
            kwargs["num_cpus"] = ray_cfg.num_cpus
        try:
            ray.init(**kwargs)
            if not address:
                _started_here.append(True)
        except ConnectionError as exc:
            raise RlgraftError(
                f"could not connect to the Ray cluster at {named}",
                found=str(exc).splitlines()[0] if str(exc) else None,
                fix="start one with `ray start --head`, check the address, and when the cluster uses "
                    "token authentication make its token available (~/.ray/auth_token or "
                    "RAY_AUTH_TOKEN); or drop ray.address to run locally",
            ) from exc
    timing.mark("ray.init done")
    return {k: float(v) for k, v in ray.cluster_resources().items()}, how


def check_reachable(address: str, named: str | None = None, timeout_s: float = 5.0) -> None:
    """Fail in seconds: Ray itself retries an unreachable GCS address for minutes."""
    named = named or f"ray.address={address!r}"
    target = address.removeprefix("ray://")
    if target == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise RlgraftError(
            f"no Ray cluster answers at {named} ({exc})",
            fix="start one there with `ray start --head --port=PORT`, fix the address, or drop "
                + ("ray.address" if named.startswith("ray.") else "RAY_ADDRESS (unset it)")
                + " to run a local runtime",
        ) from exc


def use_token_if_present() -> None:
    """Ray 2.60 clients that connect by address do not pick up ~/.ray/auth_token on their own
    (measured: "InvalidAuthToken" against a `ray start --head` of the same user)."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(token_file):
        os.environ["RAY_AUTH_MODE"] = "token"
        try:  # Ray reads its config once at import: refresh it, as `ray.init` does for new clusters
            from ray._private.authentication.authentication_token_setup import _enable_token_auth
        except ImportError:  # another Ray version: the environment variable is all there is
            return
        _enable_token_auth()


def quiet() -> None:
    """Readable output: rlgraft prints one line per iteration; Ray's tables and banners stay off."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # legacy reporter honours verbose=0
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    warnings.filterwarnings("ignore", module=r"gymnasium\..*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("ray.rllib.algorithms.algorithm_config", "ray._private.authentication",
                 "ray.tune.tune", "ray.rllib.core.rl_module.rl_module", "ray.tune.execution.tune_controller"):
        logging.getLogger(name).setLevel(logging.ERROR)


def nodes() -> list[dict[str, float]]:
    """The resources of each live node of the connected Ray runtime."""
    import ray

    return [{k: float(v) for k, v in n["Resources"].items()} for n in ray.nodes() if n.get("Alive")]


@dataclass(frozen=True)
class Fit:
    num_env_runners: int
    max_concurrent_trials: int


# What to lower when a trial asks for more of a resource than the cluster has.
HINTS = {
    "GPU": "set algo.learners.num_gpus_per_learner=0 (and algo.env_runners.num_gpus_per_env_runner=0) to "
           "train on the CPU, or ask for a fraction such as algo.learners.num_gpus_per_learner=0.5",
}


def fit(cfg: Config, cluster: dict[str, float], num_trials: int, request: Any,
        node_resources: list[dict[str, float]] | None = None) -> Fit:
    """Size EnvRunners and concurrency to the cluster; refuse a request that can never be placed.

    `request(num_env_runners) -> {"total": {...}, "bundles": [...]}` is the algorithm's own demand.
    CPUs and GPUs (and any other resource a bundle names) are counted alike: in total, per node for
    the largest bundle, and for how many trials run at once. `node_resources` defaults to the
    connected runtime's nodes; pass it (with a plain `cluster` dict) to fit without Ray.
    """
    # Concurrent sweep jobs (`hydra/launcher=rlgraft`) share the runtime: each fits to its share.
    cpus = cluster.get("CPU", 0.0) / max(1, int(os.environ.get("RLGRAFT_CONCURRENT_JOBS", "1") or 1))
    explicit = cfg.algo.env_runners.get("num_env_runners")
    concurrent_goal = min(num_trials, cfg.resources.max_concurrent_trials or num_trials)
    runners = env_runners(cfg, cpus, concurrent_goal)
    demand = request(runners)
    need = {k: float(v) for k, v in demand["total"].items() if v}
    for res, amount in need.items():
        have = cluster.get(res, 0.0)
        if amount > have:
            hint = HINTS.get(res) or (
                "lower algo.env_runners.num_env_runners (or leave it unset so rlgraft fits it)"
                if explicit is not None else "ask for fewer resources per learner/runner")
            raise RlgraftError(
                f"one trial asks for {amount:g} {res} ({_describe(demand)}) but the Ray cluster has "
                f"only {have:g} {res} in total, so Tune would leave it PENDING forever",
                found=f"cluster resources: {_fmt(cluster)}",
                fix=f"{hint}, or connect to a bigger cluster with ray.address=...",
            )
    live = nodes() if node_resources is None else node_resources
    for res in need:
        biggest = max((float(b.get(res, 0.0)) for b in demand["bundles"]), default=0.0)
        largest = max((n.get(res, 0.0) for n in live), default=None)
        if largest is not None and biggest > largest:
            raise RlgraftError(
                f"one bundle of the trial needs {biggest:g} {res} but the largest node has {largest:g}",
                found=f"bundles: {_describe(demand)}",
                fix=HINTS.get(res, "lower the CPUs per learner or runner"))
    # The small epsilon keeps 1.0 / 0.1 from flooring to 9 trials.
    fits = min((int(cluster.get(res, 0.0) / amount + 1e-9) for res, amount in need.items()), default=num_trials)
    concurrent = max(1, min(concurrent_goal, fits))
    return Fit(runners, concurrent)


def _describe(demand: dict[str, Any]) -> str:
    data = (f"; the offline data pipeline (algo.offline_data.map_batches_kwargs, one read task) "
            f"{demand['data_cpus']:g} CPU" if demand.get("data_cpus") else "")
    return f"{len(demand['bundles'])} bundles: " + ", ".join(_fmt(b) for b in demand["bundles"]) + data


def _fmt(res: dict[str, float]) -> str:
    keep = {k: v for k, v in res.items() if not k.startswith(("node:", "memory", "object_store"))}
    return ", ".join(f"{k}={v:g}" for k, v in sorted(keep.items()))
