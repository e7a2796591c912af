"""Train (and optionally restore) from config: `python -m experiments.run [overrides]`."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import rlgraft
from rlgraft.errors import RlgraftError
from rlgraft.schema import register

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        hc = HydraConfig.get()
        summary = rlgraft.run(cfg, output_dir=hc.runtime.output_dir, overrides=list(hc.overrides.task))
    except RlgraftError as err:
        print(f"rlgraft: error: {err.paragraph()}", file=sys.stderr)
        sys.exit(err.exit_code)
    value = summary["metrics"].get(summary["metric"])
    return float(value) if isinstance(value, int | float) else None


if __name__ == "__main__":
    main()
