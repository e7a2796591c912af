"""`python -m experiments.evaluate +checkpoint=PATH [episodes=20] [render=true]` (conf/evaluate.yaml)."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rlgraft import tools
from rlgraft.cli import guarded
from rlgraft.evaluation import render_table
from rlgraft.schema import register

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    print(render_table(guarded(tools.evaluate, cfg, HydraConfig.get().runtime.output_dir)))


if __name__ == "__main__":
    main()
