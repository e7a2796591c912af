"""`python -m experiments.run` in a checkout: the same as the installed `rlgraft run`."""

import sys

from rlgraft.cli import launch

if __name__ == "__main__":
    sys.exit(launch("run", sys.argv[1:], "python -m experiments.run") or 0)
