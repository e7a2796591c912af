"""Transfer as users practise it, on real runs: frozen grafts and their thaw, partial-parameter grafts,
MeanStdFilter state carried with a graft, optimizer reset, self-play snapshots, and the bad inputs."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

import rlgraft
from rlgraft import checkpoints
from rlgraft.errors import RlgraftError
from tests.conftest import tree_digest

QUIET = {"printer": lambda *_: None}


def weights(checkpoint: str | Path, module: str) -> dict[str, np.ndarray]:
    return checkpoints.read(checkpoint).modules[module].weights()


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], keys: list[str] | None = None) -> bool:
    names = keys if keys is not None else list(a)
    return set(names) <= set(a) & set(b) and all(np.array_equal(a[k], b[k]) for k in names)


def trial_checkpoints(summary: dict) -> list[Path]:
    """Every checkpoint of the run's trial, by iteration."""
    return sorted(Path(summary["trials"][0]["path"]).glob("checkpoint_*"))


def run(cfg, tmp_path: Path, name: str = "out") -> dict:
    return rlgraft.run(cfg, output_dir=str(tmp_path / name), **QUIET)


# --------------------------------------------------------------------------- freeze and thaw
def test_frozen_graft_stays_bit_identical_while_the_other_module_trains(single_run, tiny_cfg, tmp_path):
    source = single_run["checkpoint"]
    before = tree_digest(source)
    cfg = tiny_cfg("multi", {"resume": source, "restore.modules": {"p1": "default_policy"}, "restore.freeze": ["p1"],
                             "algo.training.lr": 1e-3, "algo.env_runners.num_env_runners": 1,
                             "checkpointing.frequency": 1, "stop.num_env_steps_sampled_lifetime": 768})
    out = run(cfg, tmp_path)
    src = weights(source, "default_policy")
    cks = trial_checkpoints(out)
    assert len(cks) == 3
    for ck in cks:  # learner state in every checkpoint: p1 still the source's, after updates with lr 1e-3
        assert same(weights(ck, "p1"), src)
    assert not same(weights(cks[0], "p0"), weights(cks[-1], "p0"))  # p0 did train
    # The run proved it after every iteration on the learner and the remote EnvRunner.
    assert out["metrics"]["rlgraft/frozen"] == "p1"
    assert "env_runner[remote 1]" in out["metrics"]["rlgraft/frozen_verified_on"]
    assert out["transfer"]["frozen"] == ["p1"] and out["transfer"]["events"] == []
    assert tree_digest(source) == before


def test_frozen_module_thaws_after_the_given_env_steps(single_run, tiny_cfg, tmp_path):
    source = single_run["checkpoint"]
    cfg = tiny_cfg("multi", {"resume": source, "restore.modules": {"p1": "default_policy"}, "restore.freeze": ["p1"],
                             "restore.unfreeze_after": 512, "algo.training.lr": 1e-3, "checkpointing.frequency": 1,
                             "stop.num_env_steps_sampled_lifetime": 1024})
    out = run(cfg, tmp_path)
    src = weights(source, "default_policy")
    cks = trial_checkpoints(out)
    assert [same(weights(ck, "p1"), src) for ck in cks] == [True, True, False, False]  # thawed after 512 steps
    thaw = [e for e in out["transfer"]["events"] if e["event"] == "thaw"]
    assert len(thaw) == 1 and thaw[0]["iteration"] == 2 and thaw[0]["env_steps"] == 512
    assert out["metrics"]["rlgraft/thawed"] is True and out["metrics"]["rlgraft/frozen"] == ""


# --------------------------------------------------------------------------- partial parameters
def test_encoder_only_graft_into_a_network_with_other_heads(single_run, tiny_cfg, tmp_path):
    source = single_run["checkpoint"]
    cfg = tiny_cfg("single", {"resume": source, "restore.modules": {"default_policy": "default_policy"},
                              "restore.params": ["encoder.*"], "algo.training.lr": 0.0,
                              "algo.rl_module.model_config.head_fcnet_hiddens": [32]})
    out = run(cfg, tmp_path)
    src, got = weights(source, "default_policy"), weights(out["checkpoint"], "default_policy")
    encoder = sorted(n for n in src if n.startswith("encoder."))
    assert encoder and same(got, src, encoder)  # the encoder is the source's
    heads = sorted(n for n in got if not n.startswith("encoder."))
    assert any(got[n].shape != src.get(n, np.empty(0)).shape for n in heads)  # heads are another shape, as built
    report = out["restore"]["reports"][0]["modules"][0]
    assert report["copied"] == encoder and report["kept_as_built"] == heads and report["learner_matches_source"]


# --------------------------------------------------------------------------- filter state
@pytest.fixture(scope="module")
def meanstd_run(ray_runtime, _composed, tmp_path_factory):
    from tests.conftest import TINY

    cfg = rlgraft.compose(["experiment=pendulum_meanstd", *TINY, "stop.num_env_steps_sampled_lifetime=512"])
    return rlgraft.run(cfg, output_dir=str(tmp_path_factory.mktemp("meanstd")), **QUIET)


def test_meanstd_filter_state_goes_with_the_grafted_module(meanstd_run, tiny_cfg, tmp_path):
    source = meanstd_run["checkpoint"]
    state = checkpoints.connector_states(source)["MeanStdFilter"][None]
    cfg = tiny_cfg("multi", {"resume": source, "restore.modules": {"p1": "default_policy"}, "algo.training.lr": 0.0,
                             "algo.env_runners.num_env_runners": 1, "algo.env_runners.env_to_module_connector":
                                 {"_target_": "ray.rllib.connectors.env_to_module.MeanStdFilter"}})
    out = run(cfg, tmp_path)
    report = out["restore"]["reports"][0]
    assert report["verified"] and "env_runner[remote 1]" in report["runners_checked"]
    assert report["filters"] == [{"piece": "MeanStdFilter", "source_agent": "None", "target_agent": "1",
                                  "digest": checkpoints.filter_digest(state)}]
    # After training, agent 1's statistics went on from the source's count; agent 0's started from zero.
    after = checkpoints.connector_states(out["checkpoint"])["MeanStdFilter"]
    pushes = {a: s["running_stats"][0]["num_pushes"] for a, s in after.items()}
    source_pushes = state["running_stats"][0]["num_pushes"]
    assert pushes[1] > source_pushes and pushes[1] - source_pushes == pushes[0], (pushes, source_pushes)


def test_full_restore_sets_and_verifies_the_filter_on_every_runner(meanstd_run, tiny_cfg, tmp_path):
    source = meanstd_run["checkpoint"]
    state = checkpoints.connector_states(source)["MeanStdFilter"][None]
    cfg = tiny_cfg("single", {"resume": source, "algo.env_runners.num_env_runners": 1,
                              "stop.num_env_steps_sampled_lifetime": 768,
                              "algo.env_runners.env_to_module_connector": MEANSTD})
    report = run(cfg, tmp_path)["restore"]["reports"][0]
    assert report["verified"] and "env_runner[remote 1]" in report["runners_checked"]
    assert report["filters"] == [{"piece": "MeanStdFilter", "source_agent": "None", "target_agent": "None",
                                  "digest": checkpoints.filter_digest(state)}]


# --------------------------------------------------------------------------- optimizer
def test_optimizer_reset_after_a_full_restore(single_run, tiny_cfg, tmp_path):
    cfg = tiny_cfg("single", {"resume": single_run["checkpoint"], "restore.optimizer": "reset",
                              "stop.num_env_steps_sampled_lifetime": 768})
    out = run(cfg, tmp_path)
    opt = out["restore"]["reports"][0]["optimizer"]
    assert opt["mode"] == "reset" and opt["digest"] == opt["fresh_digest"] != opt["checkpoint_digest"]
    assert out["iterations"] == 3  # counters still carried over: only the optimizer is fresh
    kept = run(tiny_cfg("single", {"resume": single_run["checkpoint"], "stop.num_env_steps_sampled_lifetime": 768}),
               tmp_path, "keep")
    assert kept["restore"]["reports"][0]["optimizer"] == {"mode": "keep"}


# --------------------------------------------------------------------------- self-play
def test_selfplay_copies_the_learner_into_the_frozen_opponent(tiny_cfg, ray_runtime, tmp_path):
    cfg = tiny_cfg("multi", {"selfplay": {"from": "p0", "to": ["p1"], "every": 2}, "algo.training.lr": 1e-3,
                             "checkpointing.frequency": 1, "stop.num_env_steps_sampled_lifetime": 1024})
    out = run(cfg, tmp_path)
    cks = trial_checkpoints(out)
    assert len(cks) == 4
    w = [{m: weights(ck, m) for m in ("p0", "p1")} for ck in cks]
    assert not same(w[0]["p1"], w[0]["p0"])  # before the first snapshot: p1 as built
    assert same(w[1]["p1"], w[1]["p0"])  # snapshot at iteration 2
    assert same(w[2]["p1"], w[1]["p1"]) and not same(w[2]["p0"], w[1]["p0"])  # p1 frozen, p0 trains
    assert same(w[3]["p1"], w[3]["p0"]) and not same(w[3]["p1"], w[1]["p1"])  # snapshot at iteration 4
    snaps = [e for e in out["transfer"]["events"] if e["event"] == "snapshot"]
    assert [e["iteration"] for e in snaps] == [2, 4] and all(e["runners"] for e in snaps)
    assert out["metrics"]["rlgraft/selfplay_snapshots"] == 2 and out["metrics"]["rlgraft/selfplay_last_iteration"] == 4


def test_selfplay_after_a_full_restore_counts_from_the_checkpoint(multi_run, tiny_cfg, tmp_path):
    source = multi_run["checkpoint"]
    assert multi_run["iterations"] == 1
    cfg = tiny_cfg("multi", {"resume": source, "selfplay": {"from": "p0", "to": ["p1"], "every": 1},
                             "stop.num_env_steps_sampled_lifetime": 768})
    out = run(cfg, tmp_path)
    assert out["iterations"] == 3 and out["restore"]["full"]
    assert [e["iteration"] for e in out["transfer"]["events"] if e["event"] == "snapshot"] == [2, 3]
    assert same(weights(out["checkpoint"], "p1"), weights(out["checkpoint"], "p0"))
    assert not same(weights(out["checkpoint"], "p1"), weights(source, "p1"))


# --------------------------------------------------------------------------- dry run and bad input
def test_dry_run_plan_names_freeze_params_and_optimizer(single_run, tiny_cfg, tmp_path):
    lines: list[str] = []
    cfg = tiny_cfg("multi", {"resume": single_run["checkpoint"], "restore.modules": {"p1": "default_policy"},
                             "restore.freeze": ["p1"], "restore.unfreeze_after": 1000, "restore.params": ["encoder.*"],
                             "restore.dry_run": True})
    summary = rlgraft.run(cfg, output_dir=str(tmp_path / "out"), printer=lines.append)
    text = "\n".join(lines)
    assert summary["status"] == "dry_run" and not (tmp_path / "out" / "tune").exists()
    assert "kept as built" in text and "pi.net.mlp.0.weight" in text.split("kept as built")[1]
    assert "frozen: p1" in text and "thawed at 1000 env steps" in text
    assert "the grafted modules start fresh" in text


SAME = {"default_policy": "default_policy"}
MEANSTD = {"_target_": "ray.rllib.connectors.env_to_module.MeanStdFilter"}
# case -> (run kind, overrides from (single ckpt, meanstd ckpt), words the message must hold)
BAD_INPUT = {
    "freeze_unknown_module": ("multi", lambda s, m: {"resume": s, "restore.modules": {"p1": "default_policy"},
                                                     "restore.freeze": ["p7"]}, ["'p7'", "p0, p1"]),
    "unfreeze_without_freeze": ("multi", lambda s, m: {"resume": s, "restore.unfreeze_after": 100},
                                ["restore.unfreeze_after", "restore.freeze"]),
    "freeze_every_module": ("single", lambda s, m: {"resume": s, "restore.freeze": ["default_policy"]},
                            ["every module", "nothing trains"]),
    "freeze_without_resume": ("multi", lambda s, m: {"restore.freeze": ["p1"]}, ["+resume=PATH"]),
    "params_match_nothing": ("single", lambda s, m: {"resume": s, "restore.modules": SAME,
                                                     "restore.params": ["decoder.*"]}, ["'decoder.*'", "encoder."]),
    "params_shape": ("single", lambda s, m: {"resume": s, "restore.modules": SAME,
                                             "restore.params": ["pi.*"],
                                             "algo.rl_module.model_config.head_fcnet_hiddens": [32]},
                     ["do not fit", "pi.net.mlp"]),
    "params_without_modules": ("single", lambda s, m: {"resume": s, "restore.params": ["encoder.*"]},
                               ["restore.modules"]),
    "optimizer_keep_on_graft": ("multi", lambda s, m: {"resume": s, "restore.modules": {"p1": "default_policy"},
                                                       "restore.optimizer": "keep"}, ["restore.optimizer=keep"]),
    "selfplay_from_in_to": ("multi", lambda s, m: {"selfplay": {"from": "p0", "to": ["p0"], "every": 2}},
                            ["own frozen snapshot"]),
    "selfplay_unknown_module": ("multi", lambda s, m: {"selfplay": {"from": "p0", "to": ["p9"], "every": 2}},
                                ["selfplay.to", "'p9'"]),
    "selfplay_typo": ("multi", lambda s, m: {"selfplay": {"from": "p0", "too": ["p1"], "every": 2}},
                      ["selfplay.too", "did you mean"]),
    "selfplay_every_zero": ("multi", lambda s, m: {"selfplay": {"from": "p0", "to": ["p1"], "every": 0}},
                            ["selfplay.every=0"]),
    "filter_in_source_only": ("multi", lambda s, m: {"resume": m, "restore.modules": {"p1": "default_policy"}},
                              ["MeanStdFilter", "raw observations"]),
    "filter_in_target_only": ("multi", lambda s, m: {"resume": s, "restore.modules": {"p1": "default_policy"},
                                                     "algo.env_runners.env_to_module_connector": MEANSTD},
                              ["MeanStdFilter", "no MeanStdFilter state"]),
    "empty_resume": ("single", lambda s, m: {"resume": ""}, ["`+resume=` is empty"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_transfer_input_is_refused_before_ray(case, single_run, meanstd_run, tiny_cfg, tmp_path):
    import ray

    single, meanstd = single_run["checkpoint"], meanstd_run["checkpoint"]
    digests = {single: tree_digest(single), meanstd: tree_digest(meanstd)}
    kind, make, words = BAD_INPUT[case]
    cfg = tiny_cfg(kind, make(single, meanstd))
    started = ray.is_initialized()
    with pytest.raises(RlgraftError) as err:
        rlgraft.run(copy.deepcopy(cfg), output_dir=str(tmp_path / "out"), **QUIET)
    for word in words:
        assert word in str(err.value), str(err.value)
    assert "Fix:" in str(err.value)
    assert not (tmp_path / "out" / "tune").exists() and ray.is_initialized() == started
    assert all(tree_digest(p) == d for p, d in digests.items())
