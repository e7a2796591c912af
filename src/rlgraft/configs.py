"""Where rlgraft's configs live, and how overrides become one typed, checked Config.

The YAML tree ships inside the package as `rlgraft.conf` (in a checkout it is the top-level
`conf/`), so an installed rlgraft composes from any folder. A user's own config folder is added to
Hydra's search path in front of it: their presets use and override rlgraft's groups.
"""

from __future__ import annotations

import os
import time
from importlib.resources import files
from pathlib import Path

from omegaconf import DictConfig

from rlgraft import rules, schema, storage
from rlgraft.schema import Config

CONF_PACKAGE = "rlgraft.conf"
CONF_DIR = Path(str(files(CONF_PACKAGE)))


def compose(overrides: list[str] | None = None, config_dir: str | os.PathLike[str] | None = None,
            config_name: str = "config") -> DictConfig:
    """Compose the Hydra config without a Hydra app (for notebooks and tests).

    `config_dir`: a folder of the user's own configs (e.g. `experiment/my_run.yaml`), searched
    before rlgraft's, as `rlgraft run -cd DIR` does.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    schema.register()
    GlobalHydra.instance().clear()
    extra = [f"hydra.searchpath=[file://{Path(config_dir).resolve()}]"] if config_dir else []
    with initialize_config_module(config_module=CONF_PACKAGE, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=[*extra, *(overrides or [])])


def prepare(cfg: DictConfig | Config, output_dir: str | None = None) -> Config:
    """Typed, validated config with absolute output and launch dirs."""
    if isinstance(cfg, DictConfig):
        rules.check_keys(cfg)
    c = schema.to_config(cfg)
    if output_dir:
        c.output_dir = str(Path(output_dir).resolve())
    if not c.output_dir:
        c.output_dir = str((Path.cwd() / "outputs" / "api" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve())
    c.launch_dir = c.launch_dir or os.getcwd()
    if c.storage and not storage.is_uri(c.storage):
        c.storage = str((Path(c.launch_dir) / c.storage.removeprefix("file://")).resolve())
    rules.check(c)
    return c


def preset_algo_options(name: str) -> tuple[str, dict[str, set[str]]] | None:
    """The `algo=` group a shipped experiment preset is made for (its `override /algo`, else config.yaml's
    `ppo`) and the `algo.<section>` options it sets, its own presets in `defaults` included; None for a
    name that is not a shipped preset (a user's own, or `~experiment`)."""
    from omegaconf import OmegaConf

    path = CONF_DIR / "experiment" / f"{name}.yaml"
    if not path.is_file():
        return None
    node = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(node, dict)
    group = "ppo"
    sections: dict[str, set[str]] = {}
    for entry in node.get("defaults") or []:
        if isinstance(entry, str) and (inner := preset_algo_options(entry)):
            group = inner[0]
            for section, keys in inner[1].items():
                sections.setdefault(section, set()).update(keys)
        elif isinstance(entry, dict) and "override /algo" in entry:
            group = str(entry["override /algo"])
    for section, options in (node.get("algo") or {}).items():
        if isinstance(options, dict):
            sections.setdefault(section, set()).update(options)
    return group, sections


def out_dir(c: Config) -> Path:
    assert c.output_dir, "prepare() fills output_dir"
    return Path(c.output_dir)


def run_storage(c: Config) -> str:
    """Tune's storage for this run or sweep job: `tune/` in its output dir, or below `storage` the output
    dir's path relative to where it was started (`outputs/DATE/TIME`, `multirun/DATE/TIME/N`), so every job
    has its own and the same command again finds it."""
    if not c.storage:
        return str(out_dir(c) / "tune")
    out, launch = out_dir(c), Path(c.launch_dir or os.getcwd())
    rel = out.relative_to(launch).as_posix() if out.is_relative_to(launch) else "/".join(out.parts[-3:])
    return storage.join(c.storage, rel)


def reports_dir(c: Config) -> str:
    """Where trials write rlgraft's restore reports and transfer events: the output dir, or with `storage` the
    run's storage (a trial on another node cannot write to the driver's disk)."""
    return storage.join(run_storage(c), "rlgraft") if c.storage else str(out_dir(c))
