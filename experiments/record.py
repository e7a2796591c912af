"""`python -m experiments.record` in a checkout: the same as the installed `rlgraft record`."""

import sys

from rlgraft.cli import launch

if __name__ == "__main__":
    sys.exit(launch("record", sys.argv[1:], "python -m experiments.record") or 0)
