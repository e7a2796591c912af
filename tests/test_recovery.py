"""A crash that cut Tune's own experiment state short (an empty `tuner.pkl`, ray 58179) does not strand a run:
the same command again goes on from the trial's last checkpoint; with several trials it names the file."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import rlgraft
from rlgraft.errors import RlgraftError
from tests.conftest import tree_digest

QUIET = {"printer": lambda *_: None}


def _crash(out: Path, experiment: str) -> Path:
    """What a kill -9 during Tune's state write leaves: no summary.json, an empty tuner.pkl."""
    (out / "summary.json").unlink()
    tuner = Path(experiment) / "tuner.pkl"
    tuner.write_bytes(b"")
    return tuner


def test_an_empty_tuner_pkl_goes_on_from_the_last_checkpoint(ray_runtime, _composed, tmp_path):
    cfg = copy.deepcopy(_composed["single"])
    cfg.checkpointing.frequency = 1
    cfg.stop.num_env_steps_sampled_lifetime = 512
    first = rlgraft.run(copy.deepcopy(cfg), output_dir=str(tmp_path), **QUIET)
    tuner = _crash(tmp_path, first["experiment_path"])
    digest = tree_digest(first["experiment_path"])
    cfg.stop.num_env_steps_sampled_lifetime = 768  # the rest of the run the crash cut short
    lines: list[str] = []
    second = rlgraft.run(copy.deepcopy(cfg), output_dir=str(tmp_path), printer=lines.append)
    assert second["status"] == "ok" and second["experiment_path"] == first["experiment_path"] + "-continued-1"
    assert second["iterations"] == 3 and second["env_steps"] == 768  # counters went on from iteration 2
    assert second["restore"]["checkpoint"] == first["checkpoint"] and second["restore"]["reports"][0]["verified"]
    assert any("tuner.pkl` is broken" in line and "going on from" in line for line in lines)
    assert tree_digest(first["experiment_path"]) == digest and tuner.stat().st_size == 0  # left as it was

    _crash(tmp_path, second["experiment_path"])  # and again: the newest checkpoint of the whole chain
    cfg.stop.num_env_steps_sampled_lifetime = 1024
    third = rlgraft.run(copy.deepcopy(cfg), output_dir=str(tmp_path), **QUIET)
    assert third["experiment_path"] == first["experiment_path"] + "-continued-2"
    assert third["restore"]["checkpoint"] == second["checkpoint"] and third["iterations"] == 4
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["status"] == "ok" and saved["env_steps"] == 1024


def test_several_trials_with_a_broken_state_name_the_file_and_the_way_on(ray_runtime, _composed, tmp_path):
    cfg = copy.deepcopy(_composed["single"])
    cfg.tune.num_samples = 2
    first = rlgraft.run(copy.deepcopy(cfg), output_dir=str(tmp_path), **QUIET)
    _crash(tmp_path, first["experiment_path"])
    with pytest.raises(RlgraftError) as err:
        rlgraft.run(copy.deepcopy(cfg), output_dir=str(tmp_path), **QUIET)
    text = str(err.value)
    assert "tuner.pkl` is broken" in text and "2 trials' checkpoints are intact" in text
    assert f'+resume="{first["experiment_path"]}"' in text and "restore.pick=latest" in text
