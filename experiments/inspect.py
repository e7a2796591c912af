"""`python -m experiments.inspect` in a checkout: the same as the installed `rlgraft inspect`."""

import sys

from rlgraft.cli import launch

if __name__ == "__main__":
    sys.exit(launch("inspect", sys.argv[1:], "python -m experiments.inspect") or 0)
