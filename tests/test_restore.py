"""Full and partial restore through the on_algorithm_init callback, on real checkpoints."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

import rlgraft
from rlgraft import checkpoints, discovery
from rlgraft.errors import RlgraftError
from tests.conftest import run_cli, tree_digest

QUIET = {"printer": lambda *_: None}


def weights(checkpoint: str, module: str) -> dict[str, np.ndarray]:
    return checkpoints.read(checkpoint).modules[module].weights()


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_full_resume_continues_iteration_and_step_counters(single_run, tiny_cfg, tmp_path):
    source = single_run["checkpoint"]
    before = tree_digest(source)
    cfg = tiny_cfg("single", {"resume": single_run["output_dir"],
                              "stop.num_env_steps_sampled_lifetime": 1024})
    out = rlgraft.run(cfg, output_dir=str(tmp_path), **QUIET)
    assert single_run["env_steps"] == 512 and single_run["iterations"] == 2
    assert out["env_steps"] == 1024  # total budget: 512 restored + 512 new
    assert out["iterations"] == 4  # iteration counter carried over (3, 4), not restarted at 1
    assert out["restore"]["full"] and out["restore"]["checkpoint"] == source
    report = out["restore"]["reports"][0]
    assert report["verified"] and {m["target"] for m in report["modules"]} == {"default_policy"}
    assert tree_digest(source) == before  # the source checkpoint is never modified


def test_budget_additional_trains_the_extra_amount(single_run, tiny_cfg, tmp_path):
    cfg = tiny_cfg("single", {"resume": single_run["checkpoint"], "restore.budget": "additional",
                              "stop.num_env_steps_sampled_lifetime": 512})
    out = rlgraft.run(cfg, output_dir=str(tmp_path), **QUIET)
    assert out["env_steps"] == 1024  # 512 more than the checkpoint's 512


@pytest.mark.parametrize("attempt", range(3))  # repeated: RLlib's own sync was seen dropped 2 in 3
def test_graft_single_into_p1_with_remote_env_runner(single_run, tiny_cfg, tmp_path, attempt):
    source = single_run["checkpoint"]
    before = tree_digest(source)
    cfg = tiny_cfg("multi", {"resume": source, "restore.modules": {"p1": "default_policy"},
                             "algo.training.lr": 0.0, "algo.env_runners.num_env_runners": 1,
                             "seed": attempt})
    out = rlgraft.run(cfg, output_dir=str(tmp_path), **QUIET)
    src = weights(source, "default_policy")
    assert same(weights(out["checkpoint"], "p1"), src)  # lr=0: p1 still holds the source weights
    assert not same(weights(out["checkpoint"], "p0"), src)  # p0 stays as built
    report = out["restore"]["reports"][0]
    assert report["verified"] and report["modules"][0]["learner_matches_source"]
    assert "env_runner[remote 1]" in report["runners_checked"]
    assert tree_digest(source) == before


def test_swap_p0_and_p1_from_a_multi_agent_checkpoint(multi_run, tiny_cfg, tmp_path):
    source = multi_run["checkpoint"]
    cfg = tiny_cfg("multi", {"resume": source, "restore.modules": {"p0": "p1", "p1": "p0"},
                             "algo.training.lr": 0.0})
    out = rlgraft.run(cfg, output_dir=str(tmp_path), **QUIET)
    assert same(weights(out["checkpoint"], "p0"), weights(source, "p1"))
    assert same(weights(out["checkpoint"], "p1"), weights(source, "p0"))
    assert out["iterations"] == 1  # partial restore leaves counters alone


def test_multi_agent_module_into_a_single_agent_run(multi_run, tiny_cfg, tmp_path):
    source = multi_run["checkpoint"]
    cfg = tiny_cfg("single", {"resume": source, "restore.modules": {"default_policy": "p1"},
                              "algo.training.lr": 0.0})
    out = rlgraft.run(cfg, output_dir=str(tmp_path), **QUIET)
    assert same(weights(out["checkpoint"], "default_policy"), weights(source, "p1"))


def test_one_source_into_several_targets(single_run, tiny_cfg, tmp_path):
    source = single_run["checkpoint"]
    cfg = tiny_cfg("multi", {"resume": source, "algo.training.lr": 0.0,
                             "restore.modules": {"p0": "default_policy", "p1": "default_policy"}})
    out = rlgraft.run(cfg, output_dir=str(tmp_path), **QUIET)
    src = weights(source, "default_policy")
    assert same(weights(out["checkpoint"], "p0"), src) and same(weights(out["checkpoint"], "p1"), src)


# ------------------------------------------------------------------ path forms and picking
@pytest.fixture(scope="module")
def three_checkpoints(ray_runtime, _composed, tmp_path_factory):
    import copy

    out = tmp_path_factory.mktemp("freq")
    cfg = copy.deepcopy(_composed["single"])
    cfg.checkpointing.frequency = 1
    cfg.stop.num_env_steps_sampled_lifetime = 768
    return rlgraft.run(cfg, output_dir=str(out), **QUIET)


def test_every_path_form_resolves(three_checkpoints, single_run, tmp_path):
    trial = Path(three_checkpoints["trials"][0]["path"])
    experiment = Path(three_checkpoints["experiment_path"])
    run_dir = Path(three_checkpoints["output_dir"])
    for form in (trial, experiment, run_dir):
        ck, how = discovery.resolve(str(form), base="/", pick="latest")
        assert ck == three_checkpoints["checkpoint"], (form, how)
        assert "latest (iteration 3) of 3" in how
    rel = Path(single_run["checkpoint"]).relative_to(Path(single_run["output_dir"]).parent)
    ck, _ = discovery.resolve(str(rel), base=str(Path(single_run["output_dir"]).parent))
    assert ck == single_run["checkpoint"]


def test_pick_best_uses_the_metric(three_checkpoints):
    trial = Path(three_checkpoints["trials"][0]["path"])
    import json

    rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    returns = {r["training_iteration"]: r["env_runners"].get("episode_return_mean") for r in rows}
    best_it = max((it for it, v in returns.items() if v is not None), key=lambda it: returns[it])
    ck, how = discovery.resolve(str(trial), base="/", pick="best",
                                  metric="env_runners/episode_return_mean")
    assert checkpoints.counters_of(Path(ck))[1] == best_it, how


# ------------------------------------------------------------------ bad input, before Ray
def _corrupt_copy(src: str, dst: Path, file: str, keep_bytes: int) -> Path:
    shutil.copytree(src, dst)
    target = dst / file
    target.write_bytes(target.read_bytes()[:keep_bytes])
    return dst


def _file(tmp: Path) -> Path:
    f = tmp / "x.txt"
    f.write_text("hi")
    return f


MODULE_STATE = f"{checkpoints.MODULES}/default_policy/module_state.pkl"
SAME = {"default_policy": "default_policy"}
TANH = "algo.rl_module.model_config.fcnet_activation"
# case -> (run kind, overrides from (single ckpt, multi ckpt, tmp dir), words the message must hold)
BAD_INPUT = {
    "missing": ("single", lambda s, m, t: {"resume": str(t / "nope")}, ["does not exist"]),
    "file": ("single", lambda s, m, t: {"resume": str(_file(t))}, ["is a file"]),
    "empty_dir": ("single", lambda s, m, t: {"resume": str(t)}, ["not a checkpoint and holds none"]),
    "truncated_state": ("single", lambda s, m, t: {"resume": str(_corrupt_copy(s, t / "ck", MODULE_STATE, 100))},
                        ["corrupted or truncated"]),
    "truncated_learner_state": ("single", lambda s, m, t: {"resume": str(_corrupt_copy(
        s, t / "ck", "learner_group/learner/state.pkl", 100))}, ["learner/state.pkl", "corrupted or truncated"]),
    "empty_algorithm_state": ("single",
                              lambda s, m, t: {"resume": str(_corrupt_copy(s, t / "ck", "algorithm_state.pkl", 0))},
                              ["corrupted or truncated"]),
    "unknown_source": ("multi", lambda s, m, t: {"resume": s, "restore.modules": {"p1": "p7"}},
                       ["'p7'", "default_policy"]),
    "unknown_target": ("multi", lambda s, m, t: {"resume": s, "restore.modules": {"p9": "default_policy"}},
                       ["'p9'", "p0, p1"]),
    "shape": ("single", lambda s, m, t: {"resume": s, "algo.rl_module.model_config.fcnet_hiddens": [16, 16, 16]},
              ["network parameters differ", "fcnet_hiddens=[16,16]"]),
    "spaces": ("single", lambda s, m, t: {"resume": s, "env.id": "MountainCarContinuous-v0"},
               ["observation spaces differ", "Box"]),
    "multi_into_single": ("single", lambda s, m, t: {"resume": m}, ["p0, p1", "restore.modules={default_policy:p0}"]),
    "single_into_multi_full": ("multi", lambda s, m, t: {"resume": s}, ["default_policy", "restore.modules"]),
    # what the weights compute, beyond their shapes (the checkpoint is [16,16] relu, PPO's module)
    "activation_full": ("single", lambda s, m, t: {"resume": s, "algo.rl_module.model_config.fcnet_activation": "tanh"},
                        ["compute something else", "model_config.fcnet_activation is \"relu\" in the checkpoint, "
                         "\"tanh\" in this run", "'restore.accept=[model_config.fcnet_activation]'",
                         "algo.rl_module.model_config.fcnet_activation=relu"]),
    "activation_graft": ("multi", lambda s, m, t: {"resume": s, "restore.modules": {"p1": "default_policy"},
                                                   "algo.rl_module.model_config.fcnet_activation": "tanh"},
                         ["default_policy -> p1", "fcnet_activation"]),
    "activation_params": ("single", lambda s, m, t: {"resume": s, "restore.modules": SAME,
                                                     "restore.params": ["encoder.*"],
                                                     "algo.rl_module.model_config.fcnet_activation": "tanh"},
                          ["fcnet_activation"]),
    "head_activation_graft": ("single", lambda s, m, t: {"resume": s, "restore.modules": SAME,
                                                   "algo.rl_module.model_config.head_fcnet_activation": "tanh"},
                        ["model_config.head_fcnet_activation"]),
    "connector_added": ("single", lambda s, m, t: {"resume": s, "algo.env_runners.env_to_module_connector": {
        "_target_": "ray.rllib.connectors.env_to_module.FlattenObservations"}},
                        ["env_to_module is RLlib's default pieces in the checkpoint",
                         "FlattenObservations(keys_to_remove=null) -> RLlib's default pieces in this run",
                         "restore.accept=[env_to_module]"]),
    "module_class": ("single", lambda s, m, t: {"resume": s, "algo.rl_module.rl_module_spec": {
        "_target_": "ray.rllib.core.rl_module.rl_module.RLModuleSpec",
        "module_class": {"_target_": "tests.parts.PPOModuleCopy"}}},
                     ["module_class is ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module."
                      "DefaultPPOTorchRLModule in the checkpoint, tests.parts.PPOModuleCopy in this run"]),
    "component_activation": ("multi", lambda s, m, t: {"resume": s, TANH: "tanh",
                                                       "restore.components": {f"{checkpoints.MODULES}/p0":
                                                                              f"{checkpoints.MODULES}/default_policy"}},
                             ["fcnet_activation"]),
    "accept_stale": ("single", lambda s, m, t: {"resume": s, "restore.accept": ["model_config.fcnet_activation"]},
                     ["do not differ there", "remove model_config.fcnet_activation"]),
    "accept_typo": ("single", lambda s, m, t: {"resume": s, "algo.rl_module.model_config.fcnet_activation": "tanh",
                                               "restore.accept": ["model_config.fcnet_activaton"]},
                    ["fcnet_activation"]),
    "accept_not_a_key": ("single", lambda s, m, t: {"resume": s, "restore.accept": ["activation"]},
                         ["not an architecture key"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_refused_before_ray(case, single_run, multi_run, tiny_cfg, tmp_path):
    import ray

    single, multi = single_run["checkpoint"], multi_run["checkpoint"]
    digests = {single: tree_digest(single), multi: tree_digest(multi)}
    kind, make, words = BAD_INPUT[case]
    cfg = tiny_cfg(kind, make(single, multi, tmp_path))
    started = ray.is_initialized()
    with pytest.raises(RlgraftError) as err:
        rlgraft.run(cfg, output_dir=str(tmp_path / "out"), **QUIET)
    for word in words:
        assert word in str(err.value), str(err.value)
    assert "Fix:" in str(err.value)
    assert not (tmp_path / "out" / "tune").exists()  # nothing was scheduled
    assert ray.is_initialized() == started
    assert all(tree_digest(p) == d for p, d in digests.items())


def test_cli_bad_checkpoint_exits_nonzero_with_one_paragraph(tmp_path):
    res = run_cli(f"+resume={tmp_path}/missing", f"hydra.run.dir={tmp_path}/o", timeout=120)
    assert res.returncode == 2
    assert "rlgraft: error: checkpoint path" in res.stderr and "Fix:" in res.stderr
    assert "Traceback" not in res.stderr


PROBE_DRY_RUN = """
import sys, ray, rlgraft
cfg = rlgraft.compose(sys.argv[3:])
summary = rlgraft.run(cfg, output_dir=sys.argv[2])
print("STATUS", summary["status"], "RAY", ray.is_initialized())
"""


def test_dry_run_prints_the_plan_without_ray(single_run, tmp_path):
    """restore.dry_run: every driver-side check, the plan (shapes, digests, counters, stop), no Ray."""
    import subprocess
    import sys

    digest = tree_digest(single_run["checkpoint"])
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-c", PROBE_DRY_RUN, "", str(out), "experiment=multi_pendulum",
                          "algo.rl_module.model_config.fcnet_hiddens=[16,16]", f"+resume={single_run['checkpoint']}",
                          "restore.modules={p1: default_policy}", "restore.dry_run=true"],
                         capture_output=True, text=True, timeout=300)
    assert "STATUS dry_run RAY False" in res.stdout, res.stderr[-3000:]
    assert "default_policy -> p1:" in res.stdout and "encoder.actor_encoder.net.mlp.0.weight [16, 3]" in res.stdout
    assert "installed Ray" in res.stdout and "stop: {'num_env_steps_sampled_lifetime': 8000}" in res.stdout
    weights = checkpoints.digest(checkpoints.read(single_run["checkpoint"]).modules["default_policy"].weights())
    assert f"weights {weights}" in res.stdout
    assert not (out / "tune").exists() and tree_digest(single_run["checkpoint"]) == digest
    with pytest.raises(RlgraftError, match="restore.dry_run=true but there is no checkpoint"):
        rlgraft.run(rlgraft.compose(["restore.dry_run=true"]), output_dir=str(tmp_path / "x"))


def test_safe_reader_never_imports_checkpoint_classes(single_run):
    """Inspection stands in placeholders for classes: nothing from the pickle runs."""
    ck = Path(single_run["checkpoint"])
    ctor = checkpoints.safe_load(ck / checkpoints.MODULES / "default_policy" / "class_and_ctor_args.pkl")
    assert isinstance(ctor["class"], type) and issubclass(ctor["class"], checkpoints.Opaque)
    assert "DefaultPPOTorchRLModule" in ctor["class"].qualname

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('ran')",))

    evil = ck.parent / "evil.pkl"
    evil.write_bytes(pickle.dumps(Boom()))
    loaded = checkpoints.safe_load(evil)  # exec is replaced by a placeholder, never called
    assert isinstance(loaded, checkpoints.Opaque)
    evil.unlink()


@pytest.mark.slow
def test_graft_transfers_skill(ray_runtime, tmp_path):
    """A solved single-agent policy grafted into p1 plays well at once; p0 starts at random level."""
    from rlgraft import evaluation
    from rlgraft.schema import EnvConfig

    solved = rlgraft.run(rlgraft.compose(["experiment=pendulum_solve"]), output_dir=str(tmp_path / "solve"),
                         **QUIET)
    assert solved["metrics"]["env_runners/episode_return_mean_last_20"] >= -300, solved["metrics"]
    source = evaluation.evaluate(solved["checkpoint"], EnvConfig(), episodes=10, explore=True)
    source_return = source["per_module"]["default_policy"]["mean"]
    hidden = ",".join(map(str, solved["config"]["algo"]["rl_module"]["model_config"]["fcnet_hiddens"]))
    graft = rlgraft.compose(["experiment=multi_pendulum", f"+resume={solved['checkpoint']}",
                             "restore.modules={p1:default_policy}",
                             f"algo.rl_module.model_config.fcnet_hiddens=[{hidden}]",
                             "algo.env_runners.num_env_runners=0", "algo.env_runners.num_envs_per_env_runner=10",
                             "stop.num_env_steps_sampled_lifetime=4000"])
    out = rlgraft.run(graft, output_dir=str(tmp_path / "graft"), **QUIET)
    first = out["metrics"]  # one 4000-step iteration: 20 episodes per agent, sampled actions
    p0 = first["env_runners/module_episode_returns_mean/p0"]
    p1 = first["env_runners/module_episode_returns_mean/p1"]
    print(f"source evaluated {source_return:.1f}; first iteration p1 {p1:.1f}, p0 {p0:.1f}")
    assert abs(p1 - source_return) < 150  # p1 plays like the source from its first iteration
    assert p0 < -900  # random-policy level (Pendulum's random return is about -1200)
    (tmp_path.parent / "transfer_figures.json").write_text(json.dumps(
        {"source_eval": source_return, "p1_first": p1, "p0_first": p0, "solve_steps": solved["env_steps"],
         "solve_wall_s": solved["wall_s"]}))


def test_raw_component_restore(single_run, tiny_cfg, tmp_path):
    """restore.components: a Checkpointable component path of the new run <- a folder of the source."""
    source = single_run["checkpoint"]
    cfg = tiny_cfg("multi", {"resume": source, "algo.training.lr": 0.0, "restore.components": {
        f"{checkpoints.MODULES}/p0": f"{checkpoints.MODULES}/default_policy"}})
    out = rlgraft.run(cfg, output_dir=str(tmp_path), **QUIET)
    assert same(weights(out["checkpoint"], "p0"), weights(source, "default_policy"))
    assert not same(weights(out["checkpoint"], "p1"), weights(source, "default_policy"))
    assert out["restore"]["components"][0][0] == f"{checkpoints.MODULES}/p0"
    assert out["iterations"] == 1  # a component restore leaves counters alone
