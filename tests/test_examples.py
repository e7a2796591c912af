"""Setups from RLlib's own shipped examples (`ray/rllib/examples/`), written as YAML presets: each trains,
what the example adds is in the checkpoint and the results, and one module grafts into a fresh run of
the same YAML with the restore verified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rlgraft
from rlgraft import architecture, checkpoints
from tests.conftest import TINY, tree_digest

QUIET = {"printer": lambda *_: None}


def run(out: Path, *overrides: str) -> dict:
    return rlgraft.run(rlgraft.compose([*[o for o in TINY if "fcnet_hiddens" not in o], *overrides]),
                       output_dir=str(out), **QUIET)


def results(summary: dict) -> list[dict]:
    trial = Path(summary["trials"][0]["path"])
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]


def graft_verified(summary: dict, target: str) -> dict:
    report = summary["restore"]["reports"][0]
    row = next(m for m in report["modules"] if m["target"] == target)
    assert report["verified"] and row["learner_matches_source"], report
    return row


@pytest.fixture(scope="module")
def example_runs(ray_runtime, tmp_path_factory):
    out = tmp_path_factory.mktemp("examples")
    return {
        "lstm": run(out / "lstm", "experiment=stateless_cartpole_lstm"),
        "mask": run(out / "mask", "experiment=action_mask", "+algo.callbacks.callbacks_class="
                    "{_target_: hydra.utils.get_class, path: tests.parts.CountEpisodes}"),
        "rps": run(out / "rps", "experiment=rps_heuristic"),
    }


def test_connectors_that_change_the_observation_graft_into_the_same_setup(example_runs, tmp_path):
    """PrevActionsPrevRewards + FlattenObservations in front of an LSTM: the module sees 5 values where the env
    gives 2; grafting it into the same YAML compares the module's spaces as RLlib builds them, not the env's."""
    source = example_runs["lstm"]["checkpoint"]
    info = checkpoints.read(source).modules["default_policy"]
    assert info.observation_space.shape == (5,)  # 2 observations + 1 previous action (one-hot of 2) + 1 reward
    assert "encoder.encoder.lstm.weight_ih_l0" in info.params and info.model_config["use_lstm"] is True
    assert architecture.checkpoint_pipeline(source).startswith(
        "PrevActionsPrevRewards(n_prev_actions=1, n_prev_rewards=1) -> FlattenObservations(")
    before = tree_digest(source)
    out = run(tmp_path, "experiment=stateless_cartpole_lstm", f"+resume={source}",
              "restore.modules={default_policy:default_policy}")
    graft_verified(out, "default_policy")
    assert tree_digest(source) == before


def test_env_config_objects_and_a_custom_module_class(example_runs, tmp_path):
    """ActionMaskEnv gets gymnasium spaces built from `_target_` nodes in env.kwargs; the module is RLlib's
    ActionMaskingTorchRLModule; a callbacks class given with Hydra's get_class idiom logs its metric."""
    summary = example_runs["mask"]
    info = checkpoints.read(summary["checkpoint"]).modules["default_policy"]
    assert info.module_class.endswith("action_masking_rlm.ActionMaskingTorchRLModule")
    assert info.action_space.n == 100 and set(info.observation_space.spaces) == {"action_mask", "observations"}
    assert results(summary)[-1]["env_runners"]["rlgraft_test_episodes"] > 0  # the callbacks class ran
    out = run(tmp_path, "experiment=action_mask", f"+resume={summary['checkpoint']}",
              "restore.modules={default_policy:default_policy}")
    graft_verified(out, "default_policy")


def test_heuristic_and_learned_modules_with_policies_to_train(example_runs, tmp_path):
    """A MultiRLModuleSpec with a heuristic module (no parameters) beside a learned one, only the learned one
    trained, FlattenObservations for one agent only, a per-module stop key; the learned module grafts."""
    summary = example_runs["rps"]
    ck = summary["checkpoint"]
    info = checkpoints.read(ck)
    assert info.modules["always_same"].module_class.endswith("AlwaysSameHeuristicRLM")
    assert info.modules["always_same"].num_params == 0
    assert info.modules["learned"].observation_space.shape == (3,)  # one-hot: FlattenObservations for player1
    assert str(info.modules["always_same"].observation_space) == "Discrete(3)"  # player2 unflattened
    learner = checkpoints.safe_load(Path(ck) / "learner_group/learner/state.pkl")
    assert learner["should_module_be_updated"] == ["learned"]
    assert set(results(summary)[-1]["env_runners"]["module_episode_returns_mean"]) == {"learned", "always_same"}
    out = run(tmp_path, "experiment=rps_heuristic", f"+resume={ck}", "restore.modules={learned:learned}")
    graft_verified(out, "learned")
    assert checkpoints.read(out["checkpoint"]).modules["always_same"].module_class.endswith("AlwaysSameHeuristicRLM")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "mask", "rps"])
def test_full_restore_of_each_example(example_runs, name, tmp_path):
    preset = {"lstm": "stateless_cartpole_lstm", "mask": "action_mask", "rps": "rps_heuristic"}[name]
    source = example_runs[name]
    out = run(tmp_path, f"experiment={preset}", f"+resume={source['checkpoint']}",
              f"stop.num_env_steps_sampled_lifetime={source['env_steps'] + 256}")
    assert out["restore"]["full"] and out["restore"]["reports"][0]["verified"]
    assert out["iterations"] == source["iterations"] + 1


def test_gymnasium_module_id_form(ray_runtime, tmp_path):
    """env.id=module:Id imports the module, which registers the id; RLlib gets the string as it is."""
    out = run(tmp_path, "env.id=tests.parts:RlgraftPendulum-v0", "stop.num_env_steps_sampled_lifetime=256")
    assert out["status"] == "ok" and out["env_steps"] == 256


def test_an_accepted_difference_trains_and_is_reported(single_run, tmp_path):
    """A graft into a network with another activation is refused by default (test_restore's table); named in
    restore.accept it trains, and the plan, the restore report and summary.json say what was accepted."""
    lines: list[str] = []
    cfg = rlgraft.compose([*TINY, f"+resume={single_run['checkpoint']}",
                           "algo.rl_module.model_config.fcnet_activation=tanh",
                           "restore.accept=[model_config.fcnet_activation]"])
    out = rlgraft.run(cfg, output_dir=str(tmp_path), printer=lines.append)
    want = {"target": "default_policy", "source": "default_policy", "key": "model_config.fcnet_activation",
            "checkpoint": '"relu"', "run": '"tanh"'}
    assert out["restore"]["accepted"] == [want]
    assert graft_verified(out, "default_policy")["accepted"] == [["model_config.fcnet_activation", '"relu"', '"tanh"']]
    assert any('accepted difference model_config.fcnet_activation: checkpoint "relu", this run "tanh"' in line
               for line in lines)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["restore"]["accepted"] == [want]
