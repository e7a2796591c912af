"""The command line: `rlgraft run|inspect|evaluate|export|report`, each a thin layer over a library
call, and one paragraph on stderr with a non-zero exit for every user error."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from rlgraft import runtime, timing
from rlgraft.errors import RlgraftError
from rlgraft.schema import register

CONF = "pkg://rlgraft.conf"
# How the user started rlgraft, for the resume command a run prints (`launch` sets it).
program = "rlgraft run"

register()


def guarded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except RlgraftError as err:
        print(f"rlgraft: error: {err.paragraph()}", file=sys.stderr)
        sys.exit(err.exit_code)


@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
def run_app(cfg: DictConfig) -> float | None:
    """Train (and optionally restore) from config; a sweep job records its failure and the sweep goes on."""
    import rlgraft
    from rlgraft.report import write_summary

    hc = HydraConfig.get()
    sweep = hc.mode == RunMode.MULTIRUN
    try:
        start_ray_early(cfg, hc.runtime.output_dir, sweep)
        summary = rlgraft.run(cfg, output_dir=hc.runtime.output_dir, overrides=list(hc.overrides.task),
                              skip_finished=sweep, program=program)
    except Exception as err:
        message = err.paragraph() if isinstance(err, RlgraftError) else unexpected(err)
        print(f"rlgraft: error: {message}", file=sys.stderr)
        if not sweep:
            runtime.exit_now(getattr(err, "exit_code", 1))
        write_summary(hc.runtime.output_dir, {"status": "error", "error": message, "trials": []})
        return None
    value = summary["metrics"].get(summary["metric"])
    return float(value) if isinstance(value, int | float) else None


def unexpected(err: BaseException) -> str:
    """An error rlgraft has no paragraph for: its type, message and where it was raised (the innermost
    frame, and the innermost one in rlgraft), so a report can name the line."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    where = [f"{f.filename}:{f.lineno} in {f.name}" for f in frames[-1:]]
    ours = [f for f in frames if "/rlgraft/" in f.filename]
    if ours and ours[-1] is not frames[-1]:
        where.append(f"from {ours[-1].filename}:{ours[-1].lineno} in {ours[-1].name}")
    return f"{type(err).__name__}: {err} (raised at {', '.join(where)}; please report it with the command)"


def start_ray_early(cfg: DictConfig, output_dir: str, sweep: bool) -> None:
    """Start the local Ray runtime in the background once the config's own checks pass, while the
    driver imports torch and RLlib (the two take 2-4 s each here). RLGRAFT_EARLY_RAY=0: off.

    A typo, a value out of range or a dry run starts nothing. The checks that need RLlib run after the
    start has finished: they read Tune's registry, which answers wrongly while `ray.init` is half done
    (measured: "algo.name='PPO' is not an RLlib algorithm"). An input those checks refuse exits through
    `runtime.exit_now`, which leaves no Ray process behind.
    """
    if os.environ.get("RLGRAFT_EARLY_RAY") == "0":
        return
    from rlgraft.configs import prepare
    from rlgraft.experiment import finished

    c = prepare(cfg, output_dir)
    if c.restore.dry_run or (sweep and finished(c)):
        return
    if runtime.start_early(c.ray, alone=runtime.one_worker_at_start(c)):
        import ray.rllib.algorithms.ppo  # noqa: F401  (the driver's heavy import, while Ray starts)

        timing.mark("torch and RLlib imported")

        runtime.wait_early()


@hydra.main(version_base="1.3", config_path=CONF, config_name="evaluate")
def evaluate_app(cfg: DictConfig) -> None:
    """Evaluate a checkpoint's modules on the CPU, without Ray: `+checkpoint=PATH [episodes=20]`."""
    from rlgraft.evaluation import evaluate_checkpoint, render_table

    print(render_table(guarded(evaluate_checkpoint, cfg, HydraConfig.get().runtime.output_dir)))


@hydra.main(version_base="1.3", config_path=CONF, config_name="export")
def export_app(cfg: DictConfig) -> None:
    """Export a checkpoint's modules as Ray-free TorchScript files: `+checkpoint=PATH [module_id=p1]`."""
    from rlgraft.export import export_checkpoint

    for module_id, files in guarded(export_checkpoint, cfg, HydraConfig.get().runtime.output_dir).items():
        print(f"{module_id}: {files['model']} (+ {files['meta']})")


@hydra.main(version_base="1.3", config_path=CONF, config_name="record")
def record_app(cfg: DictConfig) -> None:
    """Record episodes with a checkpoint's policy in RLlib's offline format: `+checkpoint=PATH [episodes=100]`."""
    from rlgraft.recording import record_checkpoint, render

    print(render(guarded(record_checkpoint, cfg, HydraConfig.get().runtime.output_dir),
                 program.replace("record", "run", 1)))
    runtime.exit_now(0)


def inspect_app(argv: list[str] | None = None, prog: str = "rlgraft inspect") -> int:
    """Show a checkpoint's components, modules and graft overrides, without running code from it."""
    from rlgraft.inspection import inspect, render

    parser = argparse.ArgumentParser(prog=prog, description=inspect_app.__doc__)
    parser.add_argument("path", help="checkpoint, Tune trial/experiment dir, or rlgraft run dir")
    parser.add_argument("--pick", choices=["latest", "best"], default="latest")
    parser.add_argument("--metric", default="env_runners/episode_return_mean")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    report = guarded(inspect, args.path, pick=args.pick, metric=args.metric)
    run = prog.removesuffix("inspect") + "run"  # `rlgraft run` or `python -m experiments.run`
    print(json.dumps(report, indent=2, default=str) if args.json else render(report, run))
    return 0


def report_app(argv: list[str] | None = None, prog: str = "rlgraft report") -> int:
    """Rebuild sweep.csv, sweep.md and plots for a run or multirun dir."""
    from rlgraft.sweep import build

    parser = argparse.ArgumentParser(prog=prog, description=report_app.__doc__)
    parser.add_argument("dir", help="outputs/DATE/TIME or multirun/DATE/TIME")
    args = parser.parse_args(argv)
    result = guarded(build, args.dir)
    print(f"{result['jobs']} jobs ({len(result['failed'])} failed): {result['md']}, {result['csv']}")
    for p in result["plots"]:
        print(f"plot: {p}")
    return 0


COMMANDS: dict[str, Callable[..., Any]] = {"run": run_app, "inspect": inspect_app, "evaluate": evaluate_app,
                                           "export": export_app, "report": report_app, "record": record_app}
HYDRA_APPS = {"run", "evaluate", "export", "record"}
USAGE = """usage: rlgraft COMMAND [ARGS]

commands:
  run        train (and restore) from config: rlgraft run [experiment=NAME] [+resume=PATH] [key=value ...]
  inspect    show a checkpoint's modules, spaces and graft overrides: rlgraft inspect PATH
  evaluate   run episodes with a checkpoint's modules: rlgraft evaluate +checkpoint=PATH [episodes=20]
  record     episodes from a checkpoint's policy, for algo=bc: rlgraft record +checkpoint=PATH [episodes=100]
  export     TorchScript files per module: rlgraft export +checkpoint=PATH [module_id=p1]
  report     sweep table and plots: rlgraft report DIR

`rlgraft run --help` lists the config groups and presets; `rlgraft run -cd DIR ...` adds your own
config folder (DIR/experiment/NAME.yaml) in front of rlgraft's."""


def check_overrides(argv: list[str]) -> None:
    """Parse each override as Hydra will, so a bad one is named with the quoting that fixes it
    (Hydra itself prints only "mismatched input '{'" and exits 1)."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    args, _ = get_args_parser().parse_known_args(argv)
    parser = OverridesParser.create()
    for override in args.overrides or []:
        try:
            parser.parse_overrides([override])
        except OverrideParseException as err:
            key, _, value = override.partition("=")
            first = str(err.message).strip().splitlines()[0]
            if value.lstrip().startswith("{"):
                print(f"rlgraft: error: cannot parse the override {override!r} ({first}). In a {{key: value}} map "
                      "Hydra takes keys unquoted, globs included. Fix: write e.g. "
                      f"'{key}={{agent_*: agent, adversary_*: adversary}}'.", file=sys.stderr)
                sys.exit(2)
            print(f"rlgraft: error: cannot parse the override {override!r} ({first}). Characters such as "
                  "{ } [ ] , ( ) = ' \" and spaces are Hydra syntax, so a value holding them must be quoted "
                  f"for the shell and for Hydra. Fix: write '{key}=\"{value}\"'.", file=sys.stderr)
            sys.exit(2)
    check_tracker_fields(args.overrides or [], args.config_dir)


def check_tracker_fields(overrides: list[str], config_dir: str | None) -> None:
    """`logger.mlflow.tracking_uri=...` sets a field of a tracker this run may not use; Hydra then fails
    with "AssertionError: Unexpected type for root: NoneType". Composed only when such a key is given."""
    fields = [o for o in overrides if re.match(r"logger\.\w+\.", o)]
    if not fields:
        return
    from rlgraft.configs import compose

    picked = [o for o in overrides if o.split("=", 1)[0].lstrip("+") in ("experiment", "logger")]
    for override in fields:
        try:
            compose([*picked, override], config_dir=config_dir)
        except AssertionError:
            tracker = override.split(".")[1]
            print(f"rlgraft: error: {override.split('=', 1)[0]!r} sets a field of the {tracker} tracker, "
                  f"which this run does not use (logger= picks the trackers; the default is none). Fix: add "
                  f"logger={tracker} (or e.g. 'logger=[{tracker},tensorboard]') to the command.", file=sys.stderr)
            sys.exit(2)
        except Exception:  # noqa: BLE001  (anything else is Hydra's to report, as it would)
            return


def config_dir_flag(argv: list[str]) -> str:
    """` -cd /abs/conf` when the user gave their own config folder, so the printed resume command finds
    their presets from any folder; "" otherwise."""
    import shlex

    for i, arg in enumerate(argv):
        value = None
        if arg in ("-cd", "--config-dir") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config-dir="):
            value = arg.split("=", 1)[1]
        if value:
            return f" -cd {shlex.quote(os.path.abspath(value))}"
    return ""


def launch(command: str, argv: list[str], prog: str) -> Any:
    """Run one command as `prog` (`rlgraft run`, or `python -m experiments.run` in a checkout)."""
    global program
    program = prog + config_dir_flag(argv)
    timing.mark("imports done")
    if command in HYDRA_APPS:
        check_overrides(argv)
        sys.argv = [prog, *argv]  # Hydra reads its overrides and flags from sys.argv
        result = COMMANDS[command]()
        if command == "run":  # summary.json and the sweep report are written: skip ray.shutdown's wait
            runtime.exit_now(0)
        return result
    return COMMANDS[command](argv, prog=prog)


def main(argv: list[str] | None = None) -> int:
    """The `rlgraft` console command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        from rlgraft.errors import did_you_mean

        print(f"rlgraft: error: unknown command {command!r}{did_you_mean(command, COMMANDS)}.\n{USAGE}",
              file=sys.stderr)
        return 2
    if "" not in sys.path and command in HYDRA_APPS:
        sys.path.insert(0, "")  # the user's own env modules import from where they run, as with `python -m`
    result = launch(command, rest, f"rlgraft {command}")
    return result if isinstance(result, int) else 0
