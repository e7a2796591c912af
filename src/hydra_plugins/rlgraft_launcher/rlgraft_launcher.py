"""`hydra/launcher=rlgraft`: sweep jobs run concurrently, sharing one Ray runtime (see rlgraft.launcher)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class RlgraftLauncherConf:
    _target_: str = "hydra_plugins.rlgraft_launcher.rlgraft_launcher.RlgraftLauncher"
    n_jobs: int | None = None  # jobs at a time; null: one per CPU of the Ray runtime


ConfigStore.instance().store(group="hydra/launcher", name="rlgraft", node=RlgraftLauncherConf, provider="rlgraft")


class RlgraftLauncher(Launcher):
    def __init__(self, n_jobs: int | None = None) -> None:
        self.n_jobs = n_jobs
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        from rlgraft.launcher import launch

        return launch(self, job_overrides, initial_job_idx)
