"""Each cell of the Checkpointable API guide (shared/seed), done through rlgraft: same result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ray import cloudpickle, tune

import rlgraft
from rlgraft import checkpointable, checkpoints

QUIET = {"printer": lambda *_: None}


def test_cell1_save_single_agent_checkpoint(single_run):
    ck = Path(single_run["checkpoint"])
    for name in ("rllib_checkpoint.json", "algorithm_state.pkl", "class_and_ctor_args.pkl",
                 "env_runner", "learner_group/learner/state.pkl",
                 "learner_group/learner/rl_module/default_policy/module_state.pkl"):
        assert (ck / name).exists(), name
    assert checkpoints.read(ck).counters["num_env_steps_sampled_lifetime"] == 512


def test_cell2_save_multi_agent_checkpoint(multi_run):
    info = checkpoints.read(multi_run["checkpoint"])
    assert set(info.modules) == {"p0", "p1"} and info.multi_agent


def test_cell3_algorithm_from_checkpoint_continues_training(single_run, ray_runtime):
    from ray.rllib.algorithms.algorithm import Algorithm

    algo = Algorithm.from_checkpoint(single_run["checkpoint"])
    try:
        assert algo.config.env == "Pendulum-v1"  # exactly as the seed's cell asserts
        assert algo.iteration == 2
        result = algo.train()
        assert result["training_iteration"] == 3
    finally:
        algo.stop()


def test_cell4_rl_module_from_checkpoint_forward_inference(single_run):
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModule

    module_dir = Path(single_run["checkpoint"]) / checkpoints.MODULES / "default_policy"
    module = RLModule.from_checkpoint(module_dir)
    out = module.forward_inference({"obs": torch.tensor([0.5, 0.25, -0.3]).unsqueeze(0).float()})
    assert out["action_dist_inputs"].shape == (1, 2)  # mean and log-std of the 1-d Pendulum action
    policy = rlgraft.load_policy(single_run["checkpoint"])
    action = policy(np.array([0.5, 0.25, -0.3], dtype=np.float32))
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0


def test_cell5_restore_into_a_running_algorithm_continues(single_run, tiny_cfg, tmp_path):
    cfg = tiny_cfg("single", {"resume": single_run["checkpoint"], "stop.num_env_steps_sampled_lifetime": 768})
    out = rlgraft.run(cfg, output_dir=str(tmp_path), **QUIET)
    assert out["iterations"] == 3 and out["env_steps"] == 768


def _plain_config(multi: bool):
    """A PPO config written as in the seed, with tiny batches and the run's network ([16,16] relu: the
    checkpoint's, so the restore computes what it computed; RLlib's default tanh would be refused)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.examples.envs.classes.multi_agent import MultiAgentPendulum

    from rlgraft.envs import PolicyMapping

    config = (PPOConfig().environment(MultiAgentPendulum, env_config={"num_agents": 2}) if multi
              else PPOConfig().environment("Pendulum-v1"))
    config = (config
              .env_runners(num_env_runners=0)
              .training(train_batch_size_per_learner=256, minibatch_size=128, num_epochs=1)
              .rl_module(model_config={"fcnet_hiddens": [16, 16], "fcnet_activation": "relu"}))
    if multi:
        config.multi_agent(policies={"p0", "p1"}, policy_mapping_fn=PolicyMapping("p{agent_id}"))
    return config


def _fit(config, tmp_path, stop: int, **run_kwargs):
    results = tune.Tuner(config.algo_class, param_space=config, run_config=tune.RunConfig(
        storage_path=str(tmp_path), stop={"num_env_steps_sampled_lifetime": stop}, verbose=0,
        **run_kwargs)).fit()
    result = results[0]
    assert result.error is None, result.error
    return result


def test_cell6_on_algorithm_init_restore_under_tune(single_run, multi_run, ray_runtime, tmp_path):
    config = _plain_config(multi=False)
    config.callbacks(on_algorithm_init=rlgraft.restore_callback(single_run["checkpoint"], config=config))
    result = _fit(config, tmp_path, stop=1024)
    assert result.metrics["num_env_steps_sampled_lifetime"] == 1024  # 512 restored + 2 iterations
    assert result.metrics["training_iteration"] == 4


def test_cell7_single_agent_policy_into_p1_under_tune(single_run, ray_runtime, tmp_path):
    config = _plain_config(multi=True).training(lr=0.0)
    callback = rlgraft.restore_callback(single_run["checkpoint"], modules={"p1": "default_policy"},
                                        config=config)
    assert callback == cloudpickle.loads(cloudpickle.dumps(callback))  # plain, comparable value
    assert "p1" in repr(callback)
    config.callbacks(on_algorithm_init=callback)
    result = _fit(config, tmp_path, stop=256)
    got = checkpoints.read(result.checkpoint.path).modules
    src = checkpoints.read(single_run["checkpoint"]).modules["default_policy"].weights()
    assert all(np.array_equal(got["p1"].weights()[k], v) for k, v in src.items())
    assert not all(np.array_equal(got["p0"].weights()[k], v) for k, v in src.items())


class CrashOnce:
    """on_train_result: fail the trial once at `iteration` (a marker file remembers), like a lost node."""

    def __init__(self, iteration: int, marker: str):
        self.iteration, self.marker = iteration, marker

    def __call__(self, *, algorithm, result, **kwargs):
        if result["training_iteration"] == self.iteration and not Path(self.marker).exists():
            Path(self.marker).write_text("crashed")
            raise RuntimeError("injected failure")


class RecordLoaded:
    """on_checkpoint_loaded: write the p1 weights digest after Tune restored the trial's own checkpoint."""

    def __init__(self, out: str):
        self.out = out

    def __call__(self, *, algorithm, **kwargs):
        state = checkpointable.learner_state(algorithm, ["p1"])["p1"]
        Path(self.out).write_text(json.dumps({"digest": checkpoints.digest(state),
                                              "iteration": algorithm.iteration}))


@pytest.mark.slow
def test_tune_retry_after_graft_keeps_the_trials_own_checkpoint(single_run, ray_runtime, tmp_path):
    import sys

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    config = _plain_config(multi=True)
    graft = rlgraft.restore_callback(single_run["checkpoint"], modules={"p1": "default_policy"}, config=config)
    loaded = tmp_path / "loaded.json"
    config.callbacks(on_algorithm_init=graft,
                     on_train_result=CrashOnce(3, str(tmp_path / "crashed")),
                     on_checkpoint_loaded=RecordLoaded(str(loaded)))
    result = _fit(config, tmp_path, stop=1024, failure_config=tune.FailureConfig(max_failures=1),
                  checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1))
    assert (tmp_path / "crashed").exists()  # the failure did happen
    after_retry = json.loads(loaded.read_text())
    assert after_retry["iteration"] == 2  # Tune restored iteration 2's checkpoint after the graft
    trial = Path(result.path)
    ck2 = checkpoints.read(trial / "checkpoint_000001")
    assert checkpoints.counters_of(trial / "checkpoint_000001")[1] == 2
    assert after_retry["digest"] == checkpoints.digest(ck2.modules["p1"].weights())  # trained p1 kept
    assert after_retry["digest"] != graft.transfers[0].digest  # not the freshly grafted source
    assert result.metrics["training_iteration"] == 4 and result.metrics["num_env_steps_sampled_lifetime"] == 1024


def test_factory_refuses_unknown_ids_and_shapes_up_front(single_run):
    config = _plain_config(multi=True)
    with pytest.raises(rlgraft.RlgraftError, match="'p5' is not a module"):
        rlgraft.restore_callback(single_run["checkpoint"], modules={"p5": "default_policy"}, config=config)
    with pytest.raises(rlgraft.RlgraftError, match="'p1' is not in the checkpoint"):
        rlgraft.restore_callback(single_run["checkpoint"], modules={"p0": "p1"})
    config.rl_module(model_config={"fcnet_hiddens": [8]})
    with pytest.raises(rlgraft.RlgraftError, match="network parameters differ"):
        rlgraft.restore_callback(single_run["checkpoint"], modules={"p1": "default_policy"}, config=config)
