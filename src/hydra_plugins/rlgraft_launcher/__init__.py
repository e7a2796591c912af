"""Hydra finds launchers in the `hydra_plugins` namespace; rlgraft's lives in `rlgraft.launcher`."""
