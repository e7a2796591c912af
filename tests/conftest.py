"""Shared fixtures: one composed config per session, one Ray runtime, real checkpoints made once."""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig

import rlgraft

ROOT = Path(__file__).resolve().parents[1]
# Tiny PPO: 256-step iterations, one epoch, a small net. Seconds per run, still real PPO.
TINY = [
    "algo.training.train_batch_size_per_learner=256",
    "algo.training.minibatch_size=128",
    "algo.training.num_epochs=1",
    "algo.rl_module.model_config.fcnet_hiddens=[16,16]",
    "stop.num_env_steps_sampled_lifetime=256",
]

# Presets that need the user's own data: what a test adds to compose them (bc_cartpole: recorded episodes).
PRESET_DATA = {name: ["algo.offline_data.input_=[/data/episodes]"] for name in ("bc_cartpole", "marwil_cartpole")}


@pytest.fixture(scope="session")
def ray_runtime():
    """One local Ray runtime with 2 CPUs for the in-process tests."""
    import ray

    from rlgraft.runtime import quiet

    quiet()
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def _composed() -> dict[str, DictConfig]:
    return {
        "single": rlgraft.compose(TINY),
        "multi": rlgraft.compose(["experiment=multi_pendulum", *TINY]),
    }


@pytest.fixture
def tiny_cfg(_composed, tmp_path):
    """A per-test copy of the composed tiny config: cfg('single'|'multi', **dotted overrides)."""

    def make(kind: str = "single", overrides: dict | None = None) -> DictConfig:
        from omegaconf import OmegaConf

        cfg = copy.deepcopy(_composed[kind])
        for key, value in (overrides or {}).items():
            OmegaConf.update(cfg, key, value, force_add=True, merge=False)
        return cfg

    return make


def run_cli(*args: str, cwd: Path = ROOT, timeout: int = 300, env: dict | None = None):
    """The real entry point in a fresh process, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def tree_digest(path: str | Path) -> str:
    """Hash of every file's name, size, mtime and content under `path`."""
    h = hashlib.sha256()
    for p in sorted(Path(path).rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}".encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def single_run(ray_runtime, _composed, tmp_path_factory):
    """A real single-agent run ([16,16] net, 2 iterations); its summary."""
    out = tmp_path_factory.mktemp("single_run")
    cfg = copy.deepcopy(_composed["single"])
    cfg.stop.num_env_steps_sampled_lifetime = 512
    return rlgraft.run(cfg, output_dir=str(out), printer=lambda *_: None)


@pytest.fixture(scope="session")
def multi_run(ray_runtime, _composed, tmp_path_factory):
    out = tmp_path_factory.mktemp("multi_run")
    cfg = copy.deepcopy(_composed["multi"])
    return rlgraft.run(cfg, output_dir=str(out), printer=lambda *_: None)


BUCKET = "rlgraft"


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """An S3 API on loopback (moto's server) with the bucket `rlgraft`, stopped after the session."""
    from tests.storage_servers import S3Server

    server = S3Server().start(tmp_path_factory.mktemp("moto") / "moto.log")
    server.client().create_bucket(Bucket=BUCKET)
    server.client().put_object(Bucket=BUCKET, Key="notes/readme.txt", Body=b"not a checkpoint")
    yield server
    server.stop()
