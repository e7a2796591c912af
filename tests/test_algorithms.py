"""Beyond PPO: RLlib's other algorithms from `algo=`, their restores (target networks included), grafts
across algorithms where the modules allow and refusals where they do not, and behaviour cloning from
recorded episodes fine-tuned by PPO."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import rlgraft
from rlgraft import algo, configs, evaluation, export, recording, restore, runtime, schema
from rlgraft.errors import RlgraftError
from tests.conftest import TINY, tree_digest

QUIET = {"printer": lambda *_: None}
ONLINE = {"appo": ("APPOConfig", "ray.rllib.algorithms.appo"),
          "impala": ("IMPALAConfig", "ray.rllib.algorithms.impala"),
          "sac": ("SACConfig", "ray.rllib.algorithms.sac"), "dqn": ("DQNConfig", "ray.rllib.algorithms.dqn")}
ENV = {"appo": "CartPole-v1", "impala": "CartPole-v1", "sac": "Pendulum-v1", "dqn": "CartPole-v1",
       "bc": "CartPole-v1", "marwil": "CartPole-v1"}
# Tiny off-policy runs: a few hundred steps, learning from the 50th, 32-sample batches, a small net.
TINY_OFF_POLICY = ["algo.training.num_steps_sampled_before_learning_starts=50",
                   "algo.training.train_batch_size_per_learner=32",
                   "+algo.reporting.min_sample_timesteps_per_iteration=100",
                   "algo.rl_module.model_config.fcnet_hiddens=[16]"]
TINY_RUNS = {
    "dqn": ["algo=dqn", "env.id=CartPole-v1", *TINY_OFF_POLICY],
    "sac": ["algo=sac", "env.id=Pendulum-v1", *TINY_OFF_POLICY],
    "appo": ["algo=appo", "env.id=CartPole-v1", "algo.training.train_batch_size_per_learner=128",
             "algo.rl_module.model_config.fcnet_hiddens=[16]"],
    "impala": ["algo=impala", "env.id=CartPole-v1", "algo.training.train_batch_size_per_learner=128",
               "algo.rl_module.model_config.fcnet_hiddens=[16]"],
}
TARGET_PREFIX = {"dqn": "_target_", "sac": "target_", "appo": "_old_"}


def compose(*overrides: str, stop: int = 300) -> object:
    return rlgraft.compose(["~experiment", "seed=0", f"stop.num_env_steps_sampled_lifetime={stop}", *overrides])


@pytest.mark.parametrize("group", sorted(ONLINE))
def test_algo_group_is_rllibs_config(group):
    """`algo=<group>` with no preset builds exactly RLlib's XConfig(), but for what rlgraft manages."""
    import importlib

    cls_name, module = ONLINE[group]
    built = algo.build(schema.to_config(rlgraft.compose([f"algo={group}", f"env.id={ENV[group]}", "~experiment",
                                                         "seed=null"]))).to_dict()
    plain_config = getattr(importlib.import_module(module), cls_name)().environment(ENV[group])
    plain_config.validate()
    plain = plain_config.to_dict()
    differs = {k for k in plain if repr(plain[k]) != repr(built.get(k))}
    assert differs == set(), {k: (plain[k], built.get(k)) for k in differs}


@pytest.mark.parametrize("group", ["bc", "marwil"])
def test_offline_group_is_rllibs_config_but_data_and_spaces(group, tmp_path):
    """An offline algorithm: RLlib's config, but for the recorded data named, the env's spaces handed over
    (RLlib's validate() wants them) and the data pipeline fitted (`algorithms.DATA_PIPELINE`)."""
    import gymnasium as gym
    from ray.rllib.algorithms.bc import BCConfig
    from ray.rllib.algorithms.marwil import MARWILConfig

    data = ["algo.offline_data.input_=[/data]", "algo.offline_data.dataset_num_iters_per_learner=1"]
    built = algo.build(schema.to_config(rlgraft.compose([f"algo={group}", "env.id=CartPole-v1", "~experiment",
                                                         "seed=null", *data]))).to_dict()
    env = gym.make("CartPole-v1")
    plain_config = {"bc": BCConfig, "marwil": MARWILConfig}[group]().environment(
        "CartPole-v1", observation_space=env.observation_space, action_space=env.action_space).offline_data(
        input_=["/data"], dataset_num_iters_per_learner=1, map_batches_kwargs={"concurrency": 1, "num_cpus": 0})
    plain_config.validate()
    plain = plain_config.to_dict()
    differs = {k for k in plain if repr(plain[k]) != repr(built.get(k))}
    assert differs == set(), {k: (plain[k], built.get(k)) for k in differs}


@pytest.mark.parametrize("group", ["sac", "dqn"])
def test_a_yaml_list_reaches_rllib_as_the_tuple_its_builder_takes(group):
    """YAML has no tuples: `n_step: [2, 5]` (a range RLlib samples from) must arrive as (2, 5), since RLlib
    tells a range from one n-step with isinstance(n_step, tuple); a list schedule stays a list."""
    lr = {"dqn": "lr", "sac": "actor_lr"}[group]  # SAC: one rate per part, and lr null
    built = algo.build(schema.to_config(compose(f"algo={group}", f"env.id={ENV[group]}", "algo.training.n_step=[2,5]",
                                                f"+algo.training.{lr}=[[0,0.001],[100,0.0001]]",
                                                *(["algo.training.lr=null"] if group == "sac" else []))))
    assert built.n_step == (2, 5) and isinstance(built.n_step, tuple)
    assert getattr(built, lr) == [[0, 0.001], [100, 0.0001]]


def test_offline_algorithm_without_data_names_the_way_to_record_it():
    with pytest.raises(RlgraftError, match="rlgraft record") as err:
        algo.build(schema.to_config(compose("algo=bc", "env.id=CartPole-v1")))
    assert "algo.offline_data.input_" in str(err.value)


def test_offline_data_pipeline_is_fitted_and_an_oversized_one_refused():
    """RLlib's default pool (2 actors of 1 CPU) and its read task cannot both run beside the trial on 2 CPUs
    (measured: it waits forever); rlgraft fits one sharing actor, and refuses a pool the cluster cannot hold."""
    base = ["experiment=bc_cartpole", "algo.offline_data.input_=[/data]"]
    fitted = algo.build(schema.to_config(rlgraft.compose(base)))
    assert fitted.map_batches_kwargs == {"concurrency": 1, "num_cpus": 0}
    assert algo.resource_request(fitted)["data_cpus"] == 1.0  # the read task
    c = schema.to_config(rlgraft.compose([*base, "+algo.offline_data.map_batches_kwargs={concurrency:2,num_cpus:1}"]))
    with pytest.raises(RlgraftError, match="offline data pipeline"):
        runtime.fit(c, {"CPU": 2.0}, 1, lambda n: algo.resource_request(algo.build(c, num_env_runners=n)),
                    node_resources=[{"CPU": 2.0}])


def test_an_algorithm_typo_and_a_ppo_key_in_another_algorithm_are_refused():
    with pytest.raises(RlgraftError, match="not an RLlib algorithm"):
        algo.build(schema.to_config(compose("algo.name=SACC")))
    with pytest.raises(RlgraftError, match=r"algo.training.lambda_. is not an option of RLlib's SACConfig"):
        algo.build(schema.to_config(compose("algo=sac", "+algo.training.lambda_=0.9")))


# --------------------------------------------------------------------------- real runs
@pytest.fixture(scope="module")
def cartpole_ppo(ray_runtime, tmp_path_factory):
    """A tiny PPO run on CartPole ([16,16]); its summary."""
    cfg = rlgraft.compose(["~experiment", "env.id=CartPole-v1", *TINY])
    return rlgraft.run(cfg, output_dir=str(tmp_path_factory.mktemp("cartpole_ppo")), **QUIET)


def plan_of(cfg, output_dir: Path) -> restore.RestorePlan:
    c = configs.prepare(cfg, output_dir=str(output_dir))
    return restore.plan(c, algo.build(c))


# All slow: the default run measured 14.7 min here with SAC's in it (2026-12-07), against a 15 min budget.
@pytest.mark.slow
@pytest.mark.parametrize(("name", "optimizer", "meanstd"),
                         [("sac", "keep", True), ("dqn", "reset", True), ("appo", "reset", False),
                          ("impala", "keep", False)])
def test_full_restore_of_an_algorithm_with_target_networks(name, optimizer, meanstd, ray_runtime, tmp_path):
    """A whole DQN / SAC / APPO / IMPALA run goes on from its checkpoint: weights and target networks verified
    on the learner, counters continued, the optimizer kept or reset, a MeanStdFilter's running statistics
    carried to the EnvRunner, the source untouched. RLlib's new stack saves no replay buffer."""
    overrides = [*TINY_RUNS[name], *(["algo.env_runners.env_to_module_connector={_target_: "
                                       "ray.rllib.connectors.env_to_module.MeanStdFilter}"] if meanstd else [])]
    first = rlgraft.run(compose(*overrides), output_dir=str(tmp_path / "first"), **QUIET)
    source = first["checkpoint"]
    before = tree_digest(source)
    assert not [p for p in Path(source).rglob("*") if "replay" in p.name.lower() or "buffer" in p.name.lower()]
    cfg = compose(*overrides, f"+resume={source}", f"restore.optimizer={optimizer}", stop=first["env_steps"] + 200)
    params = [n for n, _ in plan_of(cfg, tmp_path / "plan").callback.transfers[0].params]
    if name in TARGET_PREFIX:  # target networks compared and carried (IMPALA has none)
        assert any(n.startswith(TARGET_PREFIX[name]) for n in params), params
    out = rlgraft.run(cfg, output_dir=str(tmp_path / "resumed"), **QUIET)
    report = out["restore"]["reports"][0]
    assert report["verified"] and report["full"] and out["iterations"] > first["iterations"]
    if meanstd:  # the filter's statistics as saved, set on the EnvRunner and checked there by digest
        from rlgraft import checkpoints

        state = checkpoints.connector_states(source)["MeanStdFilter"][None]
        assert report["filters"] == [{"piece": "MeanStdFilter", "source_agent": "None", "target_agent": "None",
                                      "digest": checkpoints.filter_digest(state)}]
        assert state["running_stats"][0]["num_pushes"] >= first["env_steps"]
    opt = report["optimizer"]
    assert opt["mode"] == optimizer
    if optimizer == "reset":  # every optimizer of the learner (DQN's one, APPO's one) as a fresh build's
        assert opt["digest"] == opt["fresh_digest"] != opt["checkpoint_digest"]
    assert out["env_steps"] >= first["env_steps"] + 200
    assert tree_digest(source) == before
    # and the trained module acts without Ray, and exports (DQN's module returns actions, not a distribution)
    env = schema.EnvConfig(id=ENV[name])
    result = evaluation.evaluate(out["checkpoint"], env, episodes=1)
    assert result["per_module"]["default_policy"]["n"] == 1
    files = export.export_checkpoint(schema.EvaluateConfig(checkpoint=out["checkpoint"]), str(tmp_path / "export"))
    assert Path(files["default_policy"]["model"]).is_file()


@pytest.mark.slow
def test_ppo_into_appo_sets_the_target_networks_from_the_grafted_weights(cartpole_ppo, ray_runtime, tmp_path):
    """PPO's module goes into APPO's (the same network, plus target networks): the plan names the targets,
    and on the learner they equal the grafted weights (the check fails the run if they still follow the
    random build, as they would without rlgraft setting them)."""
    cfg = compose(*TINY_RUNS["appo"], "algo.rl_module.model_config.fcnet_hiddens=[16,16]",
                  f"+resume={cartpole_ppo['checkpoint']}", "restore.modules={default_policy:default_policy}")
    t = plan_of(cfg, tmp_path / "plan").callback.transfers[0]
    assert t.classes and t.classes[1].endswith("DefaultAPPOTorchRLModule") and not t.kept
    assert {a for a, _ in t.targets} and all(a.startswith("_old_") for a, _ in t.targets)
    out = rlgraft.run(cfg, output_dir=str(tmp_path / "run"), **QUIET)
    row = out["restore"]["reports"][0]["modules"][0]
    assert out["restore"]["reports"][0]["verified"] and row["learner_matches_source"]
    assert row["targets_set"] == len(t.targets) > 0


def test_inspect_names_the_algorithm_and_suggests_a_graft_into_appo(cartpole_ppo):
    from rlgraft import inspection

    report = inspection.inspect(cartpole_ppo["checkpoint"])
    assert report["run_config"]["algorithm"] == "PPO"
    assert any(o.startswith("algo=appo env.id=CartPole-v1 '~experiment' 'restore.modules={default_policy:default_")
               for o in report["graft_overrides"]), report["graft_overrides"]


def test_ppo_into_dqn_is_refused_naming_what_differs(cartpole_ppo, tmp_path):
    cfg = compose(*TINY_RUNS["dqn"], "algo.rl_module.model_config.fcnet_hiddens=[16,16]",
                  f"+resume={cartpole_ppo['checkpoint']}", "restore.modules={default_policy:default_policy}")
    with pytest.raises(RlgraftError, match="DefaultPPOTorchRLModule and this run's a DefaultDQNTorchRLModule") as err:
        plan_of(cfg, tmp_path)
    text = str(err.value)
    assert "only in this run: _target_" in text and "BC" in text and "restore.params" in text


def test_record_refuses_a_multi_agent_checkpoint_and_a_used_folder(multi_run, cartpole_ppo, tmp_path):
    with pytest.raises(RlgraftError, match="multi-agent"):
        recording.record_checkpoint(schema.RecordConfig(checkpoint=multi_run["checkpoint"], episodes=2), str(tmp_path))
    used = tmp_path / "used"
    used.mkdir()
    (used / "x.parquet").write_text("")
    with pytest.raises(RlgraftError, match="already holds files"):
        recording.record_checkpoint(schema.RecordConfig(checkpoint=cartpole_ppo["checkpoint"], episodes=2,
                                                        output=str(used)), str(tmp_path))


def test_record_cli_refuses_bad_input_in_one_paragraph(multi_run, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    for args, words in (([f"+checkpoint={multi_run['checkpoint']}"], "multi-agent"),
                        ([f"+checkpoint={tmp_path}/nothing"], "does not exist"),
                        ([f"+checkpoint={multi_run['checkpoint']}", "episodes=0"], "nothing to record")):
        res = subprocess.run([sys.executable, "-m", "experiments.record", *args, f"hydra.run.dir={tmp_path}/out"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and words in res.stderr and "Traceback" not in res.stderr, res.stderr[-1500:]


@pytest.mark.slow
def test_record_then_clone_with_bc_then_fine_tune_with_ppo(cartpole_ppo, ray_runtime, tmp_path):
    """The offline-to-online workflow from config: episodes recorded from a PPO policy in RLlib's format, BC
    trained on them, its policy grafted into PPO's actor (under PPO's names) with the value branch as built;
    MARWIL trained on them, its whole module (value branch included) grafted into PPO."""
    source = cartpole_ppo["checkpoint"]
    before = tree_digest(source)
    rec = recording.record_checkpoint(schema.RecordConfig(checkpoint=source, episodes=6), str(tmp_path / "rec"))
    assert rec["episodes"] == 6 and recording.read_back(Path(rec["output"]))[1] == 6
    assert json.loads((tmp_path / "rec" / "record.json").read_text())["env_steps"] == rec["env_steps"] > 0
    net = "algo.rl_module.model_config.fcnet_hiddens=[16,16]"
    bc_config = ["experiment=bc_cartpole", f"algo.offline_data.input_={rec['input_']}", net,
                 "algo.evaluation.evaluation_duration=2"]
    bc = rlgraft.run(rlgraft.compose([*bc_config, "stop.training_iteration=2"]), output_dir=str(tmp_path / "bc"),
                     **QUIET)
    assert bc["iterations"] == 2
    # the clone goes on training from its checkpoint (a full restore of an offline algorithm), verified
    more = rlgraft.run(rlgraft.compose([*bc_config, "stop.training_iteration=3", f"+resume={bc['checkpoint']}"]),
                       output_dir=str(tmp_path / "bc-more"), **QUIET)
    assert more["restore"]["reports"][0]["verified"] and more["restore"]["reports"][0]["full"]
    assert more["iterations"] == 3
    cfg = copy.deepcopy(rlgraft.compose(["experiment=cartpole", *TINY, f"+resume={bc['checkpoint']}",
                                         "restore.modules={default_policy:default_policy}"]))
    t = plan_of(cfg, tmp_path / "plan").callback.transfers[0]
    assert dict(t.renamed)["pi.net.mlp.0.weight"] == "_pi_head.net.mlp.0.weight"
    assert all(n.startswith(("vf.", "encoder.critic_encoder.")) for n in t.kept) and t.kept
    out = rlgraft.run(cfg, output_dir=str(tmp_path / "ppo"), **QUIET)
    row = out["restore"]["reports"][0]["modules"][0]
    assert out["restore"]["reports"][0]["verified"] and row["learner_matches_source"]
    assert set(row["kept_as_built"]) == set(t.kept)
    # MARWIL (experiment=marwil_cartpole) on the same episodes trains PPO's whole module, value branch included:
    # into PPO it is an ordinary graft, every parameter copied and nothing left as built
    marwil = rlgraft.run(rlgraft.compose(["experiment=marwil_cartpole", f"algo.offline_data.input_={rec['input_']}",
                                          net, "algo.rl_module.model_config.fcnet_activation=tanh",
                                          "++algo.rl_module.model_config.vf_share_layers=false",  # PPO's presets'
                                          "algo.offline_data.dataset_num_iters_per_learner=1",
                                          "stop.training_iteration=1", "algo.evaluation.evaluation_duration=2"]),
                         output_dir=str(tmp_path / "marwil"), **QUIET)
    assert marwil["iterations"] == 1 and "evaluation/env_runners/episode_return_mean" in marwil["metrics"]
    cfg = copy.deepcopy(rlgraft.compose(["experiment=cartpole", *TINY, f"+resume={marwil['checkpoint']}",
                                         "restore.modules={default_policy:default_policy}"]))
    t = plan_of(cfg, tmp_path / "plan-marwil").callback.transfers[0]
    assert not t.partial and any(n.startswith("vf.") for n, _ in t.params)
    assert tree_digest(source) == before


def test_another_algorithm_under_a_ppo_preset_is_told_which_preset_to_pick(tmp_path):
    """`algo=sac` alone keeps the default (PPO) experiment preset: the refusal names the preset, the options it
    set that SAC does not take, and SAC's own preset; without a preset SAC builds from RLlib's defaults."""
    with pytest.raises(RlgraftError) as err:
        algo.build(configs.prepare(rlgraft.compose(["algo=sac"]), str(tmp_path)))
    text = str(err.value)
    assert "preset `pendulum`" in text and "made for algo=ppo" in text and "algo.training.lambda_" in text
    assert "experiment=sac_pendulum" in text and "~experiment" in text
    assert algo.build(configs.prepare(rlgraft.compose(["algo=sac", "~experiment"]), str(tmp_path))).actor_lr > 0
    assert algo.presets_for("DQN") == ["dqn_cartpole"]


@pytest.mark.slow
def test_a_dqn_sweep_searches_its_own_options_in_concurrent_jobs(tmp_path):
    """Goal 5 beyond PPO: concurrent sweep jobs (`hydra/launcher=rlgraft`), each a Tune grid over a DQN-only
    option, run DQN trials with the searched values; an option DQN does not have is refused before Ray."""
    from tests.conftest import run_cli

    base = ["-m", "hydra/launcher=rlgraft", "~experiment", *TINY_RUNS["dqn"], "stop.num_env_steps_sampled_lifetime=200"]
    wrong = run_cli(*base, "seed=0", "+tune.search.training.clip_param={grid:[0.1,0.2]}",
                    f"hydra.sweep.dir={tmp_path / 'wrong'}", timeout=300)
    assert wrong.returncode != 0 and "clip_param" in wrong.stderr
    assert not list((tmp_path / "wrong").glob("*/tune/*/DQN_*")), "refused before any trial started"
    res = run_cli(*base, "seed=0,1", "+tune.search.training.target_network_update_freq={grid:[100,200]}",
                  f"hydra.sweep.dir={tmp_path / 'sweep'}", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "rlgraft launcher: 2 jobs, 2 at a time" in res.stderr + res.stdout
    for job in ("0", "1"):
        s = json.loads((tmp_path / "sweep" / job / "summary.json").read_text())
        assert s["status"] == "ok" and len(s["trials"]) == 2
        assert {t["config"]["target_network_update_freq"] for t in s["trials"]} == {100, 200}
        assert all(Path(t["path"]).name.startswith("DQN_") and t["env_steps"] >= 200 for t in s["trials"])
    assert (tmp_path / "sweep" / "sweep.md").is_file()


# --------------------------------------------------------------------------- multi-agent off-policy: freeze, self-play
# RLlib's multi-agent envs with integer agent ids (MultiAgentCartPole, MultiAgentPendulum), DQN and SAC.
MULTI_OFF_POLICY = {"sac": ["env=multi_pendulum", "algo=sac", *TINY_OFF_POLICY],
                    "dqn": ["experiment=multi_cartpole", "algo=dqn", *TINY_OFF_POLICY]}


def cfg_env(cfg) -> schema.EnvConfig:
    return schema.to_config(cfg).env


def test_a_multi_agent_off_policy_run_gets_rllibs_multi_agent_replay_buffer(tmp_path):
    """DQN's and SAC's default buffer is single-agent: in a multi-agent run it fails at the first sample, so the
    run gets RLlib's multi-agent counterpart with the same options; a buffer that fits is left alone."""
    def buffer(*overrides: str) -> dict:
        return algo.build(configs.prepare(rlgraft.compose([*overrides, "seed=0"]), str(tmp_path))).replay_buffer_config

    assert buffer(*MULTI_OFF_POLICY["dqn"])["type"] == "MultiAgentPrioritizedEpisodeReplayBuffer"
    assert buffer(*MULTI_OFF_POLICY["sac"], "~experiment")["type"] == "MultiAgentPrioritizedEpisodeReplayBuffer"
    kept = buffer(*MULTI_OFF_POLICY["dqn"], "+algo.training.replay_buffer_config.type=EpisodeReplayBuffer",
                  "+algo.training.replay_buffer_config.capacity=1000")
    assert kept == {"type": "MultiAgentEpisodeReplayBuffer", "capacity": 1000}
    assert buffer(*TINY_RUNS["dqn"], "~experiment")["type"] == "PrioritizedEpisodeReplayBuffer"  # single agent


def test_a_replay_buffer_reports_integer_agent_ids_as_strings():
    """RLlib's multi-agent buffer logs metrics under the env's agent ids; an integer id breaks the algorithm's
    checkpoint (`MetricsLogger.get_state` joins the path as strings). With the hook, the ids are strings."""
    from ray.rllib.utils.metrics.metrics_logger import MetricsLogger
    from ray.rllib.utils.replay_buffers import MultiAgentEpisodeReplayBuffer

    from rlgraft import replay

    def saved(buffer: MultiAgentEpisodeReplayBuffer) -> dict:
        logger = MetricsLogger()
        logger.aggregate([buffer.get_metrics()], key="replay_buffer")
        return logger.get_state()

    plain, hooked = MultiAgentEpisodeReplayBuffer(capacity=10), MultiAgentEpisodeReplayBuffer(capacity=10)
    for b in (plain, hooked):
        b.metrics.log_value(("num_agent_steps_added", 0), 5, reduce="sum")
    with pytest.raises(TypeError, match="expected str instance, int found"):
        saved(plain)
    algorithm = type("Algorithm", (), {"local_replay_buffer": hooked})()
    replay.StringAgentIds()(algorithm=algorithm)
    replay.StringAgentIds()(algorithm=algorithm)  # once more (a full restore runs the init hooks again): no double wrap
    assert any(k.endswith("num_agent_steps_added--0") for k in saved(hooked)["stats"])


@pytest.mark.slow
def test_sac_self_play_keeps_the_opponent_frozen_while_its_targets_follow(ray_runtime, tmp_path):
    """SAC self-play on two Pendulum agents: p0's weights copied into p1 every 2 iterations, p1 bit-identical
    between snapshots on the learner and the EnvRunner, while RLlib's learner moves p1's target networks
    (it updates every module's targets): the proof covers what p1 acts and learns with, not its targets."""
    from tests.test_transfer import same, trial_checkpoints, weights

    cfg = rlgraft.compose([*MULTI_OFF_POLICY["sac"], "~experiment", "seed=0", "checkpointing.frequency=1",
                           "+selfplay={from: p0, to: [p1], every: 2}", "stop.num_env_steps_sampled_lifetime=400"])
    out = rlgraft.run(cfg, output_dir=str(tmp_path / "run"), **QUIET)
    cks = trial_checkpoints(out)
    assert len(cks) == 4
    w = [{m: weights(ck, m) for m in ("p0", "p1")} for ck in cks]
    main = [k for k in w[0]["p1"] if not k.startswith(TARGET_PREFIX["sac"])]
    targets = [k for k in w[0]["p1"] if k.startswith(TARGET_PREFIX["sac"])]
    assert main and targets
    assert same(w[1]["p1"], w[1]["p0"])  # snapshot at iteration 2, targets included
    assert same(w[2]["p1"], w[1]["p1"], main) and not same(w[2]["p0"], w[1]["p0"], main)  # p1 frozen, p0 trains
    assert not same(w[2]["p1"], w[1]["p1"], targets)  # ...and p1's targets moved towards its (frozen) main net
    assert same(w[3]["p1"], w[3]["p0"], main)  # snapshot at iteration 4
    snaps = [e for e in out["transfer"]["events"] if e["event"] == "snapshot"]
    assert [e["iteration"] for e in snaps] == [2, 4] and all(e["runners"] for e in snaps)
    assert out["metrics"]["rlgraft/frozen_verified_on"]


@pytest.mark.slow
def test_single_agent_dqn_grafted_frozen_into_p1_of_multi_agent_cartpole(ray_runtime, tmp_path):
    """The guide's graft with DQN: a single-agent DQN policy into p1 of MultiAgentCartPole, frozen while p0
    trains. The whole module goes in (target networks included, verified on the learner), p1 acts with the
    source's weights to the end while its targets follow them, and the run checkpoints although the env's
    agent ids are integers."""
    first = rlgraft.run(compose(*TINY_RUNS["dqn"]), output_dir=str(tmp_path / "first"), **QUIET)
    source = first["checkpoint"]
    before = tree_digest(source)
    cfg = rlgraft.compose([*MULTI_OFF_POLICY["dqn"], "seed=0", "algo.training.target_network_update_freq=50",
                           f"+resume={source}", "restore.modules={p1: default_policy}", "restore.freeze=[p1]",
                           "stop.num_env_steps_sampled_lifetime=400", "logger=tensorboard"])
    out = rlgraft.run(cfg, output_dir=str(tmp_path / "graft"), **QUIET)
    row = out["restore"]["reports"][0]["modules"][0]
    assert out["restore"]["reports"][0]["verified"] and row["learner_matches_source"] and "copied" not in row
    assert out["metrics"]["rlgraft/frozen"] == "p1" and out["metrics"]["rlgraft/frozen_verified_on"]
    from tests.test_transfer import same, weights

    grafted, trained = weights(out["checkpoint"], "p1"), weights(source, "default_policy")
    main = [k for k in trained if not k.startswith(TARGET_PREFIX["dqn"])]
    assert same(grafted, trained, main)
    assert not same(weights(out["checkpoint"], "p0"), grafted, main)
    assert tree_digest(source) == before
    # only the encoder, into a DQN with other heads: its target encoder follows it, the rest stays as built
    encoder = compose(*TINY_RUNS["dqn"], "+algo.rl_module.model_config.head_fcnet_hiddens=[8]", f"+resume={source}",
                      "restore.modules={default_policy: default_policy}", "restore.params=[encoder.*]")
    part = rlgraft.run(encoder, output_dir=str(tmp_path / "part"), **QUIET)["restore"]["reports"][0]
    row = part["modules"][0]
    assert part["verified"] and row["targets_set"] == 2 and set(row["copied"]) == {
        "encoder.net.mlp.0.weight", "encoder.net.mlp.0.bias"}
    assert not [n for n in row["kept_as_built"] if n.startswith("_target_encoder.")]
    # tracked (TensorBoard, stepped by env steps) and evaluated per module like a PPO run
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [events] = Path(out["trials"][0]["path"]).glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert [e.step for e in acc.Scalars("ray/tune/num_env_steps_sampled_lifetime")] == [100, 200, 300, 400]
    result = evaluation.evaluate(out["checkpoint"], cfg_env(cfg), episodes=1)
    assert set(result["per_module"]) == {"p0", "p1"} and result["per_module"]["p1"]["n"] == 1


@pytest.mark.slow
def test_a_killed_bc_run_started_again_goes_on_from_its_last_checkpoint(cartpole_ppo, tmp_path):
    """An offline algorithm has no training EnvRunners, and RLlib's `Algorithm.restore_from_path` then fails
    after restoring ("'NoneType' object has no attribute 'sync_weights'"), which is how Tune restores a
    resumed trial: a killed BC run could not go on. Killed with SIGKILL after its first checkpoints, the same
    command goes on from the last one and trains to the stop."""
    from tests.conftest import run_cli
    from tests.test_tracking import kill_after_first_checkpoint

    rec = recording.record_checkpoint(schema.RecordConfig(checkpoint=cartpole_ppo["checkpoint"], episodes=4),
                                      str(tmp_path / "rec"))
    run_dir = tmp_path / "run"
    args = ["experiment=bc_cartpole", f"algo.offline_data.input_={rec['input_']}",
            "algo.rl_module.model_config.fcnet_hiddens=[16,16]", "algo.evaluation.evaluation_duration=1",
            "stop.training_iteration=60", "checkpointing.frequency=1", "checkpointing.experiment_state_s=2",
            f"hydra.run.dir={run_dir}"]
    kill_after_first_checkpoint(args, run_dir, tmp_path / "first.log")
    [trial] = run_dir.glob("tune/*/*/")
    done_before = len(list(trial.glob("checkpoint_*")))
    assert done_before >= 1
    res = run_cli(*args, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming the Tune experiment" in res.stdout and "sync_weights" not in res.stderr
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["iterations"] == 60
    import csv

    with (trial / "progress.csv").open() as f:
        iterations = [int(r["training_iteration"]) for r in csv.DictReader(f)]
    # one row per iteration up to the kill, then on from the last checkpoint (not from 1 again)
    assert iterations.count(1) == 1 and iterations[-1] == 60 and max(iterations) == 60
