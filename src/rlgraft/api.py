"""`rlgraft.run(cfg)`: the whole experiment as a plain function, for Hydra, notebooks and tests."""

from __future__ import annotations

import json
import math
import os
import shlex
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlgraft import algo, checkpoints, envs, report, runtime, schema
from rlgraft.errors import RlgraftError, did_you_mean
from rlgraft.restore import RestorePlan, describe, plan
from rlgraft.schema import Config

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

# Result keys every RLlib new-stack run reports; a stop key close to one of these but not equal is a typo.
KNOWN_RESULT_KEYS = {
    "num_env_steps_sampled_lifetime", "num_agent_steps_sampled_lifetime", "training_iteration",
    "time_total_s", "time_this_iter_s", "timesteps_total", "iterations_since_restore",
    "env_runners/episode_return_mean", "env_runners/episode_return_max",
    "env_runners/episode_return_min", "env_runners/episode_len_mean",
    "env_runners/num_env_steps_sampled_lifetime", "env_runners/num_episodes_lifetime",
    "learners/__all_modules__/num_env_steps_trained_lifetime",
}
# Per-agent and per-module keys end in an id, so they are checked on live results only.
PER_AGENT_PREFIXES = ("env_runners/agent_", "env_runners/module_")


def compose(overrides: list[str] | None = None, config_dir: str | os.PathLike[str] | None = None) -> DictConfig:
    """Compose the Hydra config without a Hydra app (for notebooks and tests)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    schema.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir or CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []))


def check_stop_keys(stop: dict[str, float]) -> None:
    """Catch near-miss typos before Ray starts; unknown custom keys are checked on live results."""
    for key in stop:
        if key in KNOWN_RESULT_KEYS or key.startswith(PER_AGENT_PREFIXES):
            continue
        hint = did_you_mean(key, KNOWN_RESULT_KEYS)
        if hint:
            _stop_key_error(key, hint)


def _stop_key_error(key: str, hint: str) -> None:
    raise RlgraftError(f"stop key `{key}` is not a result key{hint}",
                       fix="correct it, e.g. stop.num_env_steps_sampled_lifetime=8000 or "
                           "+stop.env_runners.episode_return_mean=-300")


def prepare(cfg: DictConfig | Config, output_dir: str | None = None) -> Config:
    """Typed, validated config with absolute output and launch dirs."""
    c = schema.to_config(cfg)
    if output_dir:
        c.output_dir = str(Path(output_dir).resolve())
    if not c.output_dir:
        c.output_dir = str((Path.cwd() / "outputs" / "api" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve())
    c.launch_dir = c.launch_dir or os.getcwd()
    schema.validate(c)
    return c


def out_dir(c: Config) -> Path:
    assert c.output_dir, "prepare() fills output_dir"
    return Path(c.output_dir)


def searched(cfg: Config) -> list[tuple[str, str, Any]]:
    """Every searched option as (section, option, spec); model_config entries as `model_config.<key>`."""
    out = []
    for section, entries in cfg.tune.search.items():
        for key, spec in entries.items():
            if section == "rl_module" and key == "model_config":
                out += [(section, f"{key}.{k}", v) for k, v in spec.items()]
            else:
                out.append((section, key, spec))
    return out


def param_space(config: Any, cfg: Config) -> Any:
    """The AlgorithmConfig itself, or its dict with Tune search objects where `tune.search` says."""
    if not cfg.tune.search:
        return config
    from rlgraft.tuning import sampler

    for section, entries in cfg.tune.search.items():
        if section not in algo.SECTIONS or not isinstance(entries, dict):
            raise RlgraftError(f"tune.search.{section} is not an algo section",
                               fix=f"use one of {', '.join(algo.SECTIONS)}, e.g. "
                                   "tune.search.training.lr={grid:[1e-3,3e-4]}")
        algo.check_section(type(config), section, dict.fromkeys(entries))
    space = config.to_dict()
    for section, key, spec in searched(cfg):
        where = f"tune.search.{section}.{key}"
        if key.startswith("model_config."):
            name = key.removeprefix("model_config.")
            algo.check_section(type(config), section, {"model_config": {name: None}})
            space["_model_config"] = {**(space.get("_model_config") or {}), name: sampler(spec, where)}
        elif key in space:
            space[key] = sampler(spec, where)
        else:
            raise RlgraftError(f"{where} cannot be searched by Tune (no config field {key!r})",
                               fix="search another option or set it per job with Hydra -m")
    return space


def pinned_search(cfg: Config, trial_config: dict[str, Any]) -> list[str]:
    """Overrides that fix a searched trial's own values and turn the search off, so its resume
    command continues that trial instead of re-creating the whole Tune search."""
    if not cfg.tune.search and cfg.tune.num_samples == 1:
        return []
    out = []
    for section, key, _ in searched(cfg):
        values, name = ((trial_config.get("_model_config") or {}, key.removeprefix("model_config."))
                        if key.startswith("model_config.") else (trial_config, key))
        if name in values:
            out.append(f"++algo.{section}.{key}={json.dumps(values[name])}")
    # `tune.search={}` would merge into the preset's search; deleting each section replaces it.
    return [*out, *(f"~tune.search.{section}" for section in cfg.tune.search), "tune.num_samples=1"]


def num_trials(cfg: Config) -> int:
    grids = [len(spec["grid"]) for _, _, spec in searched(cfg) if isinstance(spec, dict) and "grid" in spec]
    return math.prod(grids) * cfg.tune.num_samples


def run(cfg: DictConfig | Config, *, output_dir: str | None = None, overrides: list[str] | None = None,
        printer: Any = print, skip_finished: bool = False) -> dict[str, Any]:
    """Train to the stop, write summary.json into the output dir, return the summary.

    `overrides` (the job's command-line overrides) make the printed resume command complete.
    `skip_finished` returns an existing successful summary instead of training again (sweep re-runs);
    an unfinished Tune experiment in the output dir is always resumed from its last checkpoints.
    """
    from rlgraft import tuning

    start = time.perf_counter()
    runtime.quiet()
    c = prepare(cfg, output_dir)
    done = out_dir(c) / "summary.json"
    if skip_finished and done.is_file():
        previous = report.read_summary(done)
        if previous.get("status") == "ok":
            printer(f"rlgraft: {out_dir(c)} already finished; skipping (delete summary.json to re-run)")
            return previous
    config = algo.build(c)  # checks every algo.* key before Ray starts
    restore_plan: RestorePlan | None = plan(c, config) if c.resume else None
    stop = schema.stop_thresholds(c.stop)
    check_stop_keys(stop)
    if restore_plan:
        stop = restore_plan.stop(stop, c.restore.budget.value)
        printer(f"rlgraft: restoring from {restore_plan.checkpoint} ({restore_plan.how})")
    cluster, how = runtime.connect(c.ray)
    env_name = envs.register(c.env)
    trials = num_trials(c)
    fitted = runtime.fit(c, cluster, trials,
                         lambda n: algo.resource_request(algo.build(c, num_env_runners=n, env_name=env_name)))
    config = algo.build(c, num_env_runners=fitted.num_env_runners, env_name=env_name)
    config.callbacks(on_checkpoint_loaded=checkpoints.SyncAfterLoad())
    if restore_plan:
        config.callbacks(on_algorithm_init=restore_plan.callback)
    printer(f"rlgraft: {c.algo.name} on {c.env.id}"
            f"{f' ({c.env.num_agents} agents)' if c.env.multi_agent else ''}, {trials} trial(s), "
            f"{fitted.num_env_runners} EnvRunner(s) each, {fitted.max_concurrent_trials} at a time, "
            f"stop {stop}; Ray runtime {how}, cluster CPUs {cluster.get('CPU', 0):g}")
    storage = str(out_dir(c) / "tune")
    resuming = tuning.can_restore(storage, c.name)
    if resuming:
        printer(f"rlgraft: resuming the Tune experiment already in {storage}/{c.name} "
                "(finished trials stay as they are)")
    outcomes, guard = tuning.fit(tuning.TuneRun(
        trainable=config.algo_class, param_space=param_space(config, c), storage_path=storage,
        name=c.name, stop=stop, metric=c.metric, mode=c.mode, num_samples=c.tune.num_samples,
        max_concurrent_trials=fitted.max_concurrent_trials,
        checkpoint_frequency=c.checkpointing.frequency, checkpoint_at_end=c.checkpointing.at_end,
        num_to_keep=c.checkpointing.num_to_keep, score_attribute=c.checkpointing.score_attribute,
        max_failures=c.tune.max_failures, experiment_state_s=c.checkpointing.experiment_state_s,
        scheduler=c.tune.scheduler.value,
        grace_period=c.tune.grace_period), printer=printer,
        restore=resuming)
    summary = summarize(c, outcomes, restore_plan, time.perf_counter() - start, storage)
    keep = [o for o in overrides or [] if not o.lstrip("+~").startswith(("resume=", "restore."))]
    keep += pinned_search(c, next((t["config"] for t in summary["trials"]
                                   if t["checkpoint"] and t["checkpoint"] == summary["checkpoint"]), {}))
    summary["resume_command"] = (report.resume_command(summary["checkpoint"], " ".join(map(shlex.quote, keep)))
                                 if summary["checkpoint"] else None)
    report.write_summary(str(out_dir(c)), summary)
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


def summarize(c: Config, outcomes: list[Any], restore_plan: RestorePlan | None, wall_s: float,
              storage: str) -> dict[str, Any]:
    sign = 1.0 if c.mode == "max" else -1.0

    def score(o: Any) -> float:
        v = o.metrics.get(c.metric)
        return sign * v if isinstance(v, int | float) and v == v else float("-inf")

    ok = [o for o in outcomes if o.status != "ERROR"] or outcomes
    best = max(ok, key=score) if ok else None
    reports = sorted((out_dir(c) / "restore").glob("restore-*.json"))
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
        "experiment_path": str(Path(storage) / c.name),
        "restore": ({**restore_plan.summary(),
                     "reports": [json.loads(p.read_text()) for p in reports]} if restore_plan else None),
        "config": OmegaConf.to_container(OmegaConf.structured(c), resolve=True, enum_to_str=True),
    }
