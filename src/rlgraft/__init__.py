"""rlgraft: config-driven Ray RLlib + Tune runs with verified full and partial checkpoint restore."""

from rlgraft.configs import compose
from rlgraft.errors import RlgraftError
from rlgraft.experiment import run
from rlgraft.policy import Policy, load_policy
from rlgraft.restore import RestoreCallback
from rlgraft.restore import factory as restore_callback

__all__ = ["Policy", "RestoreCallback", "RlgraftError", "compose", "load_policy", "restore_callback", "run"]
