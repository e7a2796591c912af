"""`python -m experiments.report` in a checkout: the same as the installed `rlgraft report`."""

import sys

from rlgraft.cli import launch

if __name__ == "__main__":
    sys.exit(launch("report", sys.argv[1:], "python -m experiments.report") or 0)
