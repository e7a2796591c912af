"""`python -m experiments.evaluate` in a checkout: the same as the installed `rlgraft evaluate`."""

import sys

from rlgraft.cli import launch

if __name__ == "__main__":
    sys.exit(launch("evaluate", sys.argv[1:], "python -m experiments.evaluate") or 0)
