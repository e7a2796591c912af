"""The Ray runtime: started once per process (or connected to a cluster), and resources fitted to it."""

from __future__ import annotations

import logging
import os
import socket
import warnings
from dataclasses import dataclass
from typing import Any

from rlgraft import timing
from rlgraft.errors import RlgraftError
from rlgraft.schema import Config, RayConfig

log = logging.getLogger(__name__)


def connect(ray_cfg: RayConfig) -> tuple[dict[str, float], str]:
    """Start or join a Ray runtime once per process: (cluster resources, "started"|"connected"|"reused").

    A second `ray.init` in one process raises, and multirun jobs share a process, so an existing
    runtime is reused.
    """
    quiet()
    import ray

    how = "reused"
    if not ray.is_initialized():
        how = "connected" if ray_cfg.address else "started"
        kwargs: dict[str, Any] = dict(
            include_dashboard=ray_cfg.include_dashboard,
            logging_level=ray_cfg.logging_level,
            log_to_driver=ray_cfg.log_to_driver,
        )
        if ray_cfg.address:
            kwargs["address"] = ray_cfg.address
            kwargs.pop("include_dashboard")
            check_reachable(ray_cfg.address)
            use_token_if_present()
        elif ray_cfg.num_cpus is not None:
            kwargs["num_cpus"] = ray_cfg.num_cpus
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise RlgraftError(
                f"could not connect to the Ray cluster at ray.address={ray_cfg.address!r}",
                found=str(exc).splitlines()[0] if str(exc) else None,
                fix="start one with `ray start --head`, check the address, and when the cluster uses "
                    "token authentication make its token available (~/.ray/auth_token or "
                    "RAY_AUTH_TOKEN); or drop ray.address to run locally",
            ) from exc
    timing.mark("ray.init done")
    return {k: float(v) for k, v in ray.cluster_resources().items()}, how


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds: Ray itself retries an unreachable GCS address for minutes."""
    target = address.removeprefix("ray://")
    if target == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise RlgraftError(
            f"no Ray cluster answers at ray.address={address!r} ({exc})",
            fix="start one there with `ray start --head --port=PORT`, fix the address, or drop "
                "ray.address to run a local runtime",
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
    cpus = cluster.get("CPU", 0.0)
    explicit = cfg.algo.env_runners.get("num_env_runners")
    concurrent_goal = min(num_trials, cfg.resources.max_concurrent_trials or num_trials)
    if explicit is None:
        per_trial = max(1.0, cpus / max(concurrent_goal, 1))
        runners = int(max(0, min(cfg.resources.max_env_runners, per_trial - 1)))
        # PPO samples, then learns: one remote runner adds a process and weight syncs but no
        # parallelism, so sample in the trial itself unless two or more runners fit (measured:
        # the default run starts its first iteration ~4 s sooner with 0 runners on 2 CPUs).
        runners = 0 if runners < 2 else runners
    else:
        runners = int(explicit)
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
    return f"{len(demand['bundles'])} bundles: " + ", ".join(_fmt(b) for b in demand["bundles"])


def _fmt(res: dict[str, float]) -> str:
    keep = {k: v for k, v in res.items() if not k.startswith(("node:", "memory", "object_store"))}
    return ", ".join(f"{k}={v:g}" for k, v in sorted(keep.items()))
