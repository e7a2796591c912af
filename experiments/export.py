"""`python -m experiments.export` in a checkout: the same as the installed `rlgraft export`."""

import sys

from rlgraft.cli import launch

if __name__ == "__main__":
    sys.exit(launch("export", sys.argv[1:], "python -m experiments.export") or 0)
