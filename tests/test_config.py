"""Every preset composes and builds an RLlib config without starting Ray; typos fail early."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

import rlgraft
from rlgraft import algo, configs, envs, schema, search, stopping
from rlgraft.errors import RlgraftError
from tests.conftest import PRESET_DATA


def typed(overrides: list[str] | None = None) -> schema.Config:
    """The composed config as the typed object the rest of rlgraft uses."""
    return schema.to_config(rlgraft.compose(overrides))


PRESETS = sorted(p.stem for p in (configs.CONF_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds_an_rllib_config(preset):
    cfg = typed([f"experiment={preset}", *PRESET_DATA.get(preset, [])])
    config = algo.build(cfg)
    assert config.env == envs.resolve(cfg.env).rllib_env
    assert config.lr == cfg.algo.training.get("lr", type(config)().lr)  # the preset's, or RLlib's default
    assert config.is_multi_agent == envs.resolve(cfg.env).multi_agent


def test_build_does_not_start_ray():
    import subprocess
    import sys

    code = ("import rlgraft, ray; from rlgraft import algo, schema; "
            "algo.build(schema.to_config(rlgraft.compose(['experiment=multi_pendulum']))); "
            "print('RAY', ray.is_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "RAY False" in out.stdout, out.stderr[-2000:]


def test_defaults_match_the_issue():
    cfg = typed()
    assert cfg.env.id == "Pendulum-v1" and cfg.env.num_agents is None
    assert cfg.stop == {"num_env_steps_sampled_lifetime": 8000}
    assert cfg.resume is None


def test_multi_pendulum_declares_policies_and_mapping():
    cfg = typed(["experiment=multi_pendulum", "env.num_agents=3"])
    config = algo.build(cfg)
    assert set(config.policies) == {"p0", "p1", "p2"}
    assert [config.policy_mapping_fn(i, None) for i in range(3)] == ["p0", "p1", "p2"]
    shared = typed(["experiment=multi_pendulum", "env.policy_mapping=shared"])
    assert list(envs.resolve(shared.env).modules()) == ["shared"]


def test_any_builder_option_from_the_command_line():
    cfg = typed([
        "algo.training.lr=1e-4", "algo.rl_module.model_config.fcnet_hiddens=[64,64]",
        "algo.env_runners.num_envs_per_env_runner=8", "+algo.training.entropy_coeff_schedule=null",
        "+algo.training.use_kl_loss=false", "seed=3"])
    config = algo.build(cfg)
    assert config.lr == 1e-4 and config.num_envs_per_env_runner == 8 and config.seed == 3
    assert config.use_kl_loss is False
    assert config.model_config["fcnet_hiddens"] == [64, 64]


def test_resume_composes_with_and_without_plus():
    assert rlgraft.compose(["+resume=/x"]).resume == "/x"
    assert rlgraft.compose(["resume=/x"]).resume == "/x"
    weird = rlgraft.compose(['+resume="/a/PPO_x=1,y=2/checkpoint_000000"'])
    assert weird.resume == "/a/PPO_x=1,y=2/checkpoint_000000"


def test_restore_modules_override_replaces_the_mapping():
    cfg = rlgraft.compose(["+resume=/x", "restore.modules={p0:p1,p1:p0}", "restore.budget=additional"])
    assert dict(cfg.restore.modules) == {"p0": "p1", "p1": "p0"}
    assert schema.to_config(cfg).restore.budget is schema.Budget.additional


@pytest.mark.parametrize("override", ["algo.trainig.lr=1", "seeed=3", "restore.budget=forever",
                                      "checkpointing.frequncy=2", "experiment=no_such_preset"])
def test_typos_fail_at_compose_time(override):
    with pytest.raises(ConfigCompositionException):
        rlgraft.compose([override])


@pytest.mark.parametrize("override, words", [
    ("+algo.training.lrr=1e-4", ["algo.training.lrr", "'lr'"]),
    ("+algo.env_runners.num_env_runner=1", ["num_env_runner", "num_env_runners"]),
    ("+algo.rl_module.model_config.fcnet_hidden=[8]", ["fcnet_hidden", "fcnet_hiddens"]),
    ("algo.name=PPPO", ["PPPO", "PPO"]),
    ("env.id=Pendulum-v9", ["Pendulum-v9", "Pendulum-v1"]),
])
def test_unknown_builder_options_name_the_key_before_ray(override, words):
    cfg = typed([override])
    with pytest.raises(RlgraftError) as err:
        algo.build(cfg)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("stop, word", [
    ({"num_env_step_sampled_lifetime": 10}, "num_env_steps_sampled_lifetime"),
    ({"env_runners/episode_return_men": -300}, "env_runners/episode_return_mean"),
])
def test_stop_key_typos_fail_before_ray(stop, word):
    with pytest.raises(RlgraftError) as err:
        stopping.check_stop_keys(stop)
    assert word in str(err.value)


def test_nested_stop_keys_flatten_with_slash():
    cfg = typed(["+stop.env_runners.episode_return_mean=-300"])
    flat = stopping.flatten(cfg.stop)
    assert flat == {"num_env_steps_sampled_lifetime": 8000, "env_runners/episode_return_mean": -300}
    stopping.check_stop_keys(flat)  # a real key passes


PER_AGENT = "env_runners/agent_episode_returns_mean/*"


@pytest.mark.parametrize("returns, reached", [({"0": -250.0, "1": -350.0}, False),
                                              ({"0": -250.0, "1": -290.0}, True),
                                              ({"0": -250.0, "1": float("nan")}, False)])
def test_per_agent_stop_needs_every_agent(returns, reached):
    """`-300 per agent`: one `*` entry that holds only when every agent is at or above it."""
    from rlgraft.tuning import StopGuard

    guard = StopGuard({PER_AGENT: -300.0})
    result = {"training_iteration": 1, "env_runners": {"agent_episode_returns_mean": returns}}
    assert guard("t", result) is reached
    assert not guard.missing


def test_per_agent_stop_waits_for_an_agent_missing_from_this_result():
    from rlgraft.tuning import StopGuard

    guard = StopGuard({PER_AGENT: -300.0})
    assert not guard("t", {"training_iteration": 1, "env_runners": {"agent_episode_returns_mean": {
        "0": -900.0, "1": -900.0}}})
    assert not guard("t", {"training_iteration": 2, "env_runners": {"agent_episode_returns_mean": {"0": -200.0}}})


def test_per_agent_stop_that_matches_nothing_is_an_error():
    from rlgraft.tuning import StopGuard

    guard = StopGuard({PER_AGENT: -300.0}, grace=2)
    single_agent = {"env_runners": {"episode_return_mean": -200.0}}
    assert not guard("t", {"training_iteration": 1, **single_agent})
    assert guard("t", {"training_iteration": 2, **single_agent})  # ends the trial ...
    with pytest.raises(RlgraftError, match="never appeared"):  # ... and the run, with the reason
        guard.raise_if_missing()


def test_stop_key_grace_counts_from_the_first_finished_episode():
    """A return mean appears only once an episode has finished (several iterations with many envs);
    a key still absent 2 results after that is a typo."""
    from rlgraft.tuning import StopGuard

    guard = StopGuard({"env_runners/episode_return_mean_last_20": -300.0}, grace=2)
    none_yet = {"env_runners": {"num_episodes_lifetime": 0}}
    for it in range(1, 6):  # no episode finished in 5 iterations: not a typo yet
        assert not guard("t", {"training_iteration": it, **none_yet}) and not guard.missing
    assert not guard("t", {"training_iteration": 6, "env_runners": {"num_episodes_lifetime": 40,
                                                                    "episode_return_mean_last_20": -900.0}})
    assert guard("t", {"training_iteration": 7, "env_runners": {"num_episodes_lifetime": 80,
                                                                "episode_return_mean_last_20": -200.0}})
    assert not guard.missing  # reached, not missing
    typo = StopGuard({"env_runners/episode_return_mean_lats_20": -300.0}, grace=2)
    assert not typo("t", {"training_iteration": 1, **none_yet})
    assert not typo("t", {"training_iteration": 2, "env_runners": {"num_episodes_lifetime": 40}})
    assert typo("t", {"training_iteration": 3, "env_runners": {"num_episodes_lifetime": 80}})
    with pytest.raises(RlgraftError, match="after the first finished episode"):
        typo.raise_if_missing()


def test_per_agent_stop_composes_from_the_command_line():
    cfg = typed([f"+stop={{{PER_AGENT}: -300}}"])
    assert stopping.flatten(cfg.stop)[PER_AGENT] == -300
    stopping.check_stop_keys(stopping.flatten(cfg.stop))


def test_multi_agent_solve_preset_is_the_single_agent_one_per_policy():
    single, multi = typed(["experiment=pendulum_solve"]), typed(["experiment=multi_pendulum_solve"])
    assert multi.algo == single.algo and multi.env.num_agents == 2
    # Both stop on the mean of the last 20 episodes (rlgraft.episodes.LastEpisodes): summed, or per agent.
    assert stopping.stop_thresholds(single.stop) == {"num_env_steps_sampled_lifetime": 400000,
                                                     "env_runners/episode_return_mean_last_20": -300}
    assert stopping.stop_thresholds(multi.stop) == {"num_env_steps_sampled_lifetime": 500000,
                                                    "env_runners/agent_episode_return_mean_last_20/*": -300}


@pytest.mark.parametrize("override, word", [("restore.modules={p1:p0}", "+resume"),
                                            ("stop.num_env_steps_sampled_lifetime=abc", "not a number"),
                                            ("mode=maximum", "mode")])
def test_cross_field_rules(override, word):
    with pytest.raises(RlgraftError) as err:
        configs.prepare(rlgraft.compose([override]), output_dir="/tmp/rlgraft-never-written")
    assert word in str(err.value)


def test_help_lists_groups_and_presets():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "experiments.run", "--help"], capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert out.returncode == 0
    for word in ("experiment: ", "multi_pendulum", "env: ", "ray: ", "cluster", "+resume"):
        assert word in out.stdout, out.stdout


def test_search_space_yaml_becomes_tune_samplers():
    from ray.tune.search.sample import Categorical, Float, Integer

    cfg = typed([
        "+tune.search.training.lr={loguniform:[1e-5,1e-3]}", "+tune.search.training.gamma={uniform:[0.9,0.99]}",
        "+tune.search.training.num_epochs={randint:[1,10]}", "+tune.search.training.minibatch_size={choice:[64,128]}",
        "+tune.search.rl_module.model_config={fcnet_hiddens:{grid:[[32],[64]]}}", "tune.num_samples=3"])
    config = algo.build(cfg)
    space = search.param_space(config, cfg)
    assert isinstance(space["lr"], Float) and space["lr"].lower == 1e-5
    assert isinstance(space["gamma"], Float) and isinstance(space["num_epochs"], Integer)
    assert isinstance(space["minibatch_size"], Categorical)
    assert space["_model_config"]["fcnet_hiddens"] == {"grid_search": [[32], [64]]}
    assert space["_model_config"]["fcnet_activation"] == "relu"  # the rest of model_config is kept
    assert search.num_trials(cfg) == 6  # 2 grid points x 3 samples


@pytest.mark.parametrize("override, word", [
    ("+tune.search.training.lr={between:[1,2]}", "tune.search.training.lr"),
    ("+tune.search.trainin.lr={grid:[1]}", "not an algo section"),
    ("+tune.search.training.lrr={grid:[1]}", "algo.training.lrr"),
])
def test_search_space_errors_name_the_entry(override, word):
    cfg = typed([override])
    with pytest.raises(RlgraftError) as err:
        search.param_space(algo.build(cfg), cfg)
    assert word in str(err.value)
