"""Train (and optionally restore) from config: `python -m experiments.run [overrides]`."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import rlgraft
from rlgraft.report import write_summary
from rlgraft.schema import register

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    sweep = hc.mode == RunMode.MULTIRUN
    try:
        summary = rlgraft.run(cfg, output_dir=hc.runtime.output_dir, overrides=list(hc.overrides.task),
                              skip_finished=sweep)
    except Exception as err:  # a sweep records the failure and goes on with the other jobs
        message = err.paragraph() if isinstance(err, rlgraft.RlgraftError) else f"{type(err).__name__}: {err}"
        print(f"rlgraft: error: {message}", file=sys.stderr)
        if not sweep:
            sys.exit(getattr(err, "exit_code", 1))
        write_summary(hc.runtime.output_dir, {"status": "error", "error": message, "trials": []})
        return None
    value = summary["metrics"].get(summary["metric"])
    return float(value) if isinstance(value, int | float) else None


if __name__ == "__main__":
    main()
