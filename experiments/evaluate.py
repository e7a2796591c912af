"""`python -m experiments.evaluate +checkpoint=PATH ...` (see conf/evaluate.yaml)."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rlgraft import tools
from rlgraft.errors import RlgraftError
from rlgraft.evaluation import render_table
from rlgraft.schema import register

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    try:
        result = tools.evaluate(cfg, HydraConfig.get().runtime.output_dir)
    except RlgraftError as err:
        print(f"rlgraft: error: {err.paragraph()}", file=sys.stderr)
        sys.exit(err.exit_code)
    print(render_table(result))


if __name__ == "__main__":
    main()
