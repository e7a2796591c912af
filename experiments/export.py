"""`python -m experiments.export +checkpoint=PATH ...` (see conf/export.yaml)."""

from __future__ import annotations

import json
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rlgraft import tools
from rlgraft.errors import RlgraftError
from rlgraft.schema import register

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    try:
        result = tools.export(cfg, HydraConfig.get().runtime.output_dir)
    except RlgraftError as err:
        print(f"rlgraft: error: {err.paragraph()}", file=sys.stderr)
        sys.exit(err.exit_code)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
