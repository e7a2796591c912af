"""`rlgraft.run(cfg)`: one experiment as a plain function, for the CLI, notebooks and tests.

The story: check the config -> plan the restore -> trackers -> connect to Ray and fit resources -> build
the RLlib config -> train with Tune -> report.
"""

from __future__ import annotations

import re
import shlex
import time
from typing import Any

from omegaconf import DictConfig

from rlgraft import (
    algo,
    algorithms,
    checkpointable,
    envs,
    recovery,
    replay,
    report,
    runtime,
    search,
    stopping,
    timing,
    transfer,
)
from rlgraft.configs import out_dir, prepare, reports_dir, run_storage
from rlgraft.errors import RlgraftError
from rlgraft.restore import RestorePlan, describe, plan
from rlgraft.schema import Config
from rlgraft.storage import check_reachable as check_storage
from rlgraft.storage import is_uri as storage_uri


def run(cfg: DictConfig | Config, *, output_dir: str | None = None, overrides: list[str] | None = None,
        printer: Any = print, skip_finished: bool = False,
        program: str = report.PROGRAM) -> dict[str, Any]:
    """Train to the stop, write summary.json into the output dir, return the summary.

    `overrides` (the job's command-line overrides) make the printed resume command complete, and
    `program` is how the user started rlgraft (`rlgraft run` or `python -m experiments.run`).
    `skip_finished` returns an existing successful summary instead of training again (sweep re-runs);
    an unfinished Tune experiment in the output dir is always resumed from its last checkpoints.
    """
    from rlgraft import tracking, tuning

    start = time.perf_counter()
    runtime.quiet()

    # 1. Check everything that can be checked without Ray.
    c = prepare(cfg, output_dir)
    if joined := runtime.environment_address(c.ray):
        printer(f"rlgraft: joining the Ray cluster at RAY_ADDRESS={joined} (from the environment; unset "
                "RAY_ADDRESS for a local runtime of this run's own)")
    if skip_finished and (previous := finished(c)):
        printer(f"rlgraft: {out_dir(c)} already finished; skipping (delete summary.json to re-run)")
        return previous
    if c.storage and storage_uri(c.storage):
        check_storage(c.storage)  # an endpoint that does not answer, a missing bucket: seconds, not minutes
    config = algo.build(c)  # checks every algo.* key
    stop = stopping.stop_thresholds(c.stop)
    resolved = envs.resolve(c.env)
    stopping.check_ids({**{k: f"stop key `{k}`" for k in stop},
                        **{k: f"{o}={k}" for k, o in stopping.named_result_keys(
                            c.metric, c.checkpointing.score_attribute).items()}},
                       resolved.modules() if resolved.multi_agent else [envs.SINGLE_AGENT_MODULE],
                       [a for a in resolved.agents if a is not None] or ["default_agent"])  # RLlib's single agent

    # 2. Plan the restore: resolve PATH, check modules, spaces and shapes against this run. A Tune experiment
    # whose own state a crash cut short goes on from its trial's last checkpoint (`recovery`).
    storage, name = run_storage(c), experiment_name(c, resolved)
    c, name = recovery.plan(c, storage, name, printer)
    restore_plan: RestorePlan | None = plan(c, config) if c.resume else None
    schedule = transfer.schedule(c, list(resolved.modules()), *(
        (restore_plan.counters.get("num_env_steps_sampled_lifetime", 0.0),
         int(restore_plan.counters.get("training_iteration", 0))) if restore_plan and restore_plan.callback.full
        else (0.0, 0)))
    if restore_plan:
        restore_plan.schedule = schedule.lines()
        stop = restore_plan.stop(stop, c.restore.budget.value)
        for line in restore_plan.lines(stop):  # the same plan a dry run prints
            printer(line)
        if c.restore.dry_run:
            printer("rlgraft: dry run: every check passed; nothing trained, Ray not started")
            return {"status": "dry_run", "restore": restore_plan.summary(), "stop": stop, "metrics": {},
                    "metric": c.metric}

    timing.mark("checks done")

    # 3. Trackers (`logger=`): packages and tracking servers checked before Ray starts.
    loggers = tracking.build(c, restore_plan)

    # 4. Connect to Ray and fit EnvRunners and concurrency to the cluster.
    cluster, how = runtime.connect(c.ray, alone=runtime.one_worker_at_start(c))
    trials = search.num_trials(c)
    fitted = runtime.fit(c, cluster, trials, lambda n: algo.resource_request(algo.build(c, num_env_runners=n)))

    # 5. The RLlib config that runs, with rlgraft's hooks.
    config = algo.build(c, num_env_runners=fitted.num_env_runners)
    algo.add_callbacks(config, on_checkpoint_loaded=checkpointable.SyncAfterLoad())
    if algorithms.is_offline(c.algo.name):  # before Tune restores a resumed trial through it
        algo.add_callbacks(config, on_algorithm_init=checkpointable.OfflineRestore())
    if c.resources.torch_threads:
        algo.add_callbacks(config, on_algorithm_init=runtime.TorchThreads(c.resources.torch_threads))
    if resolved.multi_agent and replay.uses_buffer(config):
        algo.add_callbacks(config, on_algorithm_init=replay.StringAgentIds())
    if restore_plan:
        algo.add_callbacks(config, on_algorithm_init=restore_plan.callback)
    for event, event_hooks in transfer.hooks(schedule, reports_dir(c)).items():  # after the restore's
        for hook in event_hooks:
            algo.add_callbacks(config, **{event: hook})
    if timing.enabled():  # bench/startup.py: phase timestamps from inside the trial
        algo.add_callbacks(config, **timing.hooks())
    env = envs.resolve(c.env)
    printer(f"rlgraft: {c.algo.name} on {env.label}"
            f"{f' ({len(env.agents)} agents, modules {sorted(env.modules())})' if env.multi_agent else ''}, "
            f"{trials} trial(s), "
            f"{fitted.num_env_runners} EnvRunner(s) each, {fitted.max_concurrent_trials} at a time, "
            f"stop {stop}; Ray runtime {how}, cluster CPUs {cluster.get('CPU', 0):g}")

    # 6. Train with Tune (or resume the unfinished Tune experiment already in the output dir).
    resuming = tuning.can_restore(storage, name)
    if resuming:
        printer(f"rlgraft: resuming the Tune experiment already in {storage}/{name} "
                "(finished trials stay as they are)")
    outcomes, guard = tuning.fit(tuning.TuneRun.of(c, name, search.param_space(config, c), config.algo_class,
                                                   storage, stop, fitted.max_concurrent_trials),
                                 printer=printer, restore=resuming, loggers=loggers)

    # 7. Report: summary.json (also to the trackers), the restore report, the checkpoint and the command to resume.
    summary = report.summarize(c, outcomes, restore_plan, time.perf_counter() - start, f"{storage}/{name}")
    if schedule.active:
        summary["transfer"] = {**schedule.summary(), "events": transfer.events(reports_dir(c))}
    summary["resume_command"] = resume_command(c, summary, overrides, program)
    report.write_summary(str(out_dir(c)), summary)
    for line in tracking.finish(summary):
        printer(line)
    timing.mark("summary written")
    guard.raise_if_missing()
    for rep in (summary["restore"] or {}).get("reports", [])[:1]:
        for line in describe(rep):
            printer(line)
    for line in report.closing_lines(summary):
        printer(line)
    failed = [o for o in outcomes if o.status == "ERROR"]
    if failed and len(failed) == len(outcomes):
        raise RlgraftError(f"every trial failed; first error: {failed[0].error}",
                           found=f"trial logs under {failed[0].path}",
                           fix="read error.txt in the trial folder")
    return summary


def experiment_name(c: Config, env: envs.ResolvedEnv) -> str:
    """The Tune experiment folder: the preset's name and the env, e.g. `pendulum_solve-Pendulum-v1`."""
    return f"{c.name}-{re.sub(r'[^A-Za-z0-9._-]+', '_', env.label).strip('_')}"


def finished(c: Config) -> dict[str, Any] | None:
    """The summary of a run that already ended well in this output dir (sweep re-runs skip it)."""
    done = out_dir(c) / "summary.json"
    if done.is_file():
        previous = report.read_summary(done)
        if previous.get("status") == "ok":
            return previous
    return None


def resume_command(c: Config, summary: dict[str, Any], overrides: list[str] | None, program: str) -> str | None:
    """The command that continues from the best checkpoint: the job's overrides (without the old
    restore), a searched trial's own values pinned, and `+resume=` quoted for Hydra."""
    if not summary["checkpoint"]:
        return None
    keep = [o for o in overrides or [] if not o.lstrip("+~").startswith(("resume=", "restore."))]
    keep += search.pinned_search(c, next((t["config"] for t in summary["trials"]
                                          if t["checkpoint"] and t["checkpoint"] == summary["checkpoint"]), {}))
    return report.resume_command(summary["checkpoint"], " ".join(map(shlex.quote, keep)), program)
