"""Resource fitting without Ray: `runtime.fit` with clusters given as plain dicts, the algorithm's
own request built as `rlgraft.run` builds it (RLlib's `default_resource_request`, no runtime)."""

from __future__ import annotations

import pytest

import rlgraft
from rlgraft import algo, runtime, schema
from rlgraft.errors import RlgraftError

CPU_ONLY = {"CPU": 2.0, "memory": 1e10, "object_store_memory": 1e9}
ONE_GPU = {"CPU": 8.0, "GPU": 1.0}
FOUR_GPUS = {"CPU": 16.0, "GPU": 4.0}


def fitted(overrides: list[str], cluster: dict[str, float], nodes: list[dict[str, float]] | None = None,
           trials: int = 1) -> runtime.Fit:
    c = schema.to_config(rlgraft.compose(overrides))
    return runtime.fit(c, cluster, trials, lambda n: algo.resource_request(algo.build(c, num_env_runners=n)),
                       node_resources=[cluster] if nodes is None else nodes)


def test_gpu_learner_on_a_cluster_without_gpus_fails_at_once():
    with pytest.raises(RlgraftError) as err:
        fitted(["algo.learners.num_gpus_per_learner=1"], CPU_ONLY)
    text = err.value.paragraph()
    assert "asks for 1 GPU" in text and "only 0 GPU" in text and "PENDING" in text
    assert "cluster resources: CPU=2" in text  # what is there
    assert "algo.learners.num_gpus_per_learner=0" in text  # the override that fixes it


def test_gpu_learner_fits_a_cluster_with_a_gpu():
    fit = fitted(["algo.learners.num_gpus_per_learner=1"], ONE_GPU)
    assert fit.max_concurrent_trials == 1
    # 8 CPUs: EnvRunners are fitted as before (capped by resources.max_env_runners)
    assert fit.num_env_runners == 2


def test_gpus_limit_how_many_trials_run_at_once():
    # 8 trials on 16 CPUs: 2 CPUs each, so 0 remote runners and 1 CPU per trial; 4 GPUs allow 4.
    fit = fitted(["algo.learners.num_gpus_per_learner=1"], FOUR_GPUS, trials=8)
    assert fit == runtime.Fit(num_env_runners=0, max_concurrent_trials=4)
    half = fitted(["algo.learners.num_gpus_per_learner=0.5"], FOUR_GPUS, trials=10)
    assert half.max_concurrent_trials == 8  # 4 / 0.5, though the CPUs would hold 10


def test_more_gpu_learners_than_gpus_is_refused():
    with pytest.raises(RlgraftError, match="asks for 2 GPU") as err:
        fitted(["algo.learners.num_learners=2", "algo.learners.num_gpus_per_learner=1"], ONE_GPU)
    assert "only 1 GPU" in err.value.paragraph()


def test_gpu_bundle_larger_than_any_node_is_refused():
    # Two nodes with one GPU each: 2 GPUs in total, but no node holds a 2-GPU learner.
    nodes = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}]
    with pytest.raises(RlgraftError, match="needs 2 GPU but the largest node has 1"):
        fitted(["algo.learners.num_gpus_per_learner=2"], {"CPU": 16.0, "GPU": 2.0}, nodes=nodes)


def test_cpu_only_fitting_is_unchanged():
    assert fitted([], CPU_ONLY) == runtime.Fit(num_env_runners=0, max_concurrent_trials=1)
    assert fitted([], {"CPU": 8.0}, trials=4) == runtime.Fit(num_env_runners=0, max_concurrent_trials=4)
    with pytest.raises(RlgraftError, match="asks for 7 CPU"):
        fitted(["algo.env_runners.num_env_runners=6"], CPU_ONLY)


@pytest.mark.parametrize(("overrides", "one"), [
    ([], True),  # the default run on 2 CPUs: one trial that samples in its own process
    (["ray.num_cpus=2", "algo.env_runners.num_env_runners=1"], False),  # a remote EnvRunner starts with it
    (["ray.num_cpus=8"], False),  # 8 CPUs: two EnvRunners are fitted
    (["ray.num_cpus=2", "experiment=pendulum_grid"], False),  # a grid: trials start together
    (["ray.num_cpus=2", "ray.address=127.0.0.1:6379"], False),  # a cluster's workers are not ours to warm
    (["ray.num_cpus=2", "~experiment", "algo=sac"], False),  # not known to run in one process
])
def test_only_a_run_that_starts_one_worker_warms_the_first_alone(overrides, one):
    """`runtime.one_worker_at_start` decides whether the first idle worker imports alone (and gets the
    trial) or every idle worker imports at once, as remote EnvRunners and concurrent trials need."""
    c = schema.to_config(rlgraft.compose(overrides))
    if not overrides:
        c.ray.num_cpus = 2
    assert runtime.one_worker_at_start(c) is one


def test_torch_threads_reach_the_trial_and_every_remote_env_runner(ray_runtime):
    """`resources.torch_threads` is set in the algorithm's own process and in each remote EnvRunner (a
    process Ray starts with one thread): 2 there can only come from rlgraft's hook."""
    import torch

    c = schema.to_config(rlgraft.compose(["~experiment", "env.id=CartPole-v1", "seed=0", "resources.torch_threads=2",
                                          "algo.env_runners.num_env_runners=1",
                                          "algo.rl_module.model_config.fcnet_hiddens=[8]"]))
    config = algo.build(c, num_env_runners=1)
    before = torch.get_num_threads()
    algorithm = config.build_algo()
    try:
        def threads(*_: object) -> int:
            import torch

            return torch.get_num_threads()

        assert algorithm.env_runner_group.foreach_env_runner(threads, local_env_runner=False) == [1]
        runtime.TorchThreads(c.resources.torch_threads)(algorithm=algorithm)
        assert algorithm.env_runner_group.foreach_env_runner(threads, local_env_runner=False) == [2]
        assert torch.get_num_threads() == 2
    finally:
        algorithm.stop()
        torch.set_num_threads(before)
