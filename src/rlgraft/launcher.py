"""Concurrent sweep jobs (`hydra/launcher=rlgraft`): a Hydra multirun's jobs run a few at a time in
worker processes that all join one Ray runtime, each fitted to its share of the cluster.

Hydra's basic launcher runs jobs one after another, so CPUs one job does not use sit idle. Here the
launcher starts (or names) one Ray runtime, and `n_jobs` spawned workers each run Hydra's own
`run_job` for a job at a time: own output dir and storage, `summary.json`, failures recorded and
finished jobs skipped on a re-run, exactly as under the basic launcher, since the job function is the
same. A worker keeps its Ray connection and imports for the next job it takes. Each job fits its
EnvRunners to `CPUs / n_jobs` (`RLGRAFT_CONCURRENT_JOBS`, read by `runtime.fit`).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

JOBS_ENV = "RLGRAFT_CONCURRENT_JOBS"  # how many jobs share the cluster (runtime.fit divides by it)


def register_plugin() -> None:
    """Make `hydra/launcher=rlgraft` known to Hydra. An installed wheel needs nothing (Hydra scans the
    `hydra_plugins` namespace); an editable install hides that namespace from Hydra's scan, so the class
    is added to Hydra's plugin table by name here."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.rlgraft_launcher.rlgraft_launcher import RlgraftLauncher  # registers the config too

    table = Plugins.instance().class_name_to_class
    table.setdefault(f"{RlgraftLauncher.__module__}.{RlgraftLauncher.__name__}", RlgraftLauncher)


def start_runtime(config: Any) -> tuple[str | None, float]:
    """The Ray runtime the jobs join: the sweep's `ray.address`, or a local one started here (through
    `runtime.connect`, so the launcher's exit ends it like a run's). Returns (address for the workers,
    cluster CPUs)."""
    import ray
    from omegaconf import OmegaConf

    from rlgraft import runtime
    from rlgraft.schema import RayConfig

    ray_cfg = RayConfig(**OmegaConf.to_container(config.ray, resolve=True))  # type: ignore[arg-type]
    if ray_cfg.address:
        return None, 0.0  # each job connects to the cluster itself, as under the basic launcher
    cluster, _ = runtime.connect(ray_cfg)
    return ray.get_runtime_context().gcs_address, float(cluster.get("CPU", 1.0))


def _worker_setup(address: str | None, n_jobs: int) -> None:
    """In each worker: join the launcher's runtime (Ray reads RAY_ADDRESS) and know the share."""
    if address:
        os.environ["RAY_ADDRESS"] = address
    os.environ[JOBS_ENV] = str(n_jobs)


def _execute(payload: bytes) -> bytes:
    """One job in a worker, through Hydra's own `run_job` (output dir, .hydra/, callbacks, logging)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import run_job, setup_globals
    from ray import cloudpickle

    hydra_context, task_function, sweep_config = cloudpickle.loads(payload)
    setup_globals()
    HydraConfig.instance().set_config(sweep_config)
    ret = run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                  job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    return bytes(cloudpickle.dumps(ret))


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
    """Run the jobs `n_jobs` at a time; a worker that dies is that job's failure, recorded like any other."""
    from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
    from omegaconf import open_dict
    from ray import cloudpickle

    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    address, cpus = start_runtime(config)
    n_jobs = int(launcher.n_jobs or max(1, int(cpus)) or 1)
    n_jobs = max(1, min(n_jobs, len(job_overrides)))
    log.info(f"rlgraft launcher: {len(job_overrides)} jobs, {n_jobs} at a time, Ray at {address or 'ray.address'}")
    jobs = []
    for i, overrides in enumerate(job_overrides):
        idx = initial_job_idx + i
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        sweep_config = launcher.hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        jobs.append((list(overrides), sweep_config))
    context = multiprocessing.get_context("spawn")  # the launcher holds Ray's threads: never fork it
    results: list[Any] = []
    with cf.ProcessPoolExecutor(max_workers=n_jobs, mp_context=context, initializer=_worker_setup,
                                initargs=(address, n_jobs)) as pool:
        futures = [pool.submit(_execute, bytes(cloudpickle.dumps((launcher.hydra_context, launcher.task_function,
                                                                  sweep_config))))
                   for _, sweep_config in jobs]
        for (overrides, sweep_config), future in zip(jobs, futures, strict=True):
            try:
                results.append(cloudpickle.loads(future.result()))
            except Exception as exc:  # the worker died (killed, out of memory): record, go on
                results.append(JobReturn(overrides=overrides, cfg=sweep_config, status=JobStatus.FAILED,
                                         _return_value=exc))
                _record_failure(sweep_config, exc)
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    return results


def _record_failure(sweep_config: Any, exc: BaseException) -> None:
    from hydra.core.hydra_config import HydraConfig

    from rlgraft.report import write_summary

    try:
        HydraConfig.instance().set_config(sweep_config)
        job_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
    except Exception:  # noqa: BLE001 - a path we cannot resolve: the JobReturn still says it failed
        return
    if not (job_dir / "summary.json").is_file():
        write_summary(str(job_dir), {"status": "error", "error": f"worker process died: {exc!r}", "trials": []})
