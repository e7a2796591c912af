"""Rebuild sweep.csv, sweep.md and plots for a run or multirun dir: `python -m experiments.report DIR`."""

from __future__ import annotations

import argparse
import sys

from rlgraft.cli import guarded
from rlgraft.sweep import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__)
    parser.add_argument("dir", help="outputs/DATE/TIME or multirun/DATE/TIME")
    args = parser.parse_args(argv)
    result = guarded(build, args.dir)
    print(f"{result['jobs']} jobs ({len(result['failed'])} failed): {result['md']}, {result['csv']}")
    for p in result["plots"]:
        print(f"plot: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
