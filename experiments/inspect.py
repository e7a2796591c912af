"""Show a checkpoint's components, modules and graft overrides: `python -m experiments.inspect PATH`."""

from __future__ import annotations

import argparse
import json
import sys

from rlgraft.cli import guarded
from rlgraft.inspection import inspect, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.inspect", description=__doc__)
    parser.add_argument("path", help="checkpoint, Tune trial/experiment dir, or rlgraft run dir")
    parser.add_argument("--pick", choices=["latest", "best"], default="latest")
    parser.add_argument("--metric", default="env_runners/episode_return_mean")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    report = guarded(inspect, args.path, pick=args.pick, metric=args.metric)
    print(json.dumps(report, indent=2, default=str) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
