"""`python -m experiments.export +checkpoint=PATH [module_id=p1]`: Ray-free TorchScript policies."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rlgraft import tools
from rlgraft.cli import guarded
from rlgraft.schema import register

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    for module_id, files in guarded(tools.export, cfg, HydraConfig.get().runtime.output_dir).items():
        print(f"{module_id}: {files['model']} (+ {files['meta']})")


if __name__ == "__main__":
    main()
