"""What differs between RLlib's algorithms, in one place: which learn only from recorded data, and which
default modules of two algorithms compute the same policy under other parameter names.

Everything else rlgraft needs per algorithm it reads from RLlib itself: option names from the builders
(`algo.check_section`), resources from `default_resource_request` (learner, aggregator and replay
actors alike), target networks from the module's `TargetNetworkAPI` (`target_networks`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rlgraft.errors import RlgraftError

# Algorithms that learn only from recorded episodes (`algo.offline_data.input_`); the env is used for
# evaluation only, so its spaces are handed to RLlib from the driver.
OFFLINE = frozenset({"BC", "MARWIL", "CQL", "IQL"})
# Algorithms whose trial, with no remote EnvRunners or learners, runs in one process (no aggregator or
# replay actors): such a run needs one warm Ray worker at its start (`runtime.one_worker_at_start`).
IN_ONE_PROCESS = frozenset({"PPO"})

_PPO = "ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module.DefaultPPOTorchRLModule"
_APPO = "ray.rllib.algorithms.appo.torch.default_appo_torch_rl_module.DefaultAPPOTorchRLModule"
_BC = "ray.rllib.algorithms.bc.torch.default_bc_torch_rl_module.DefaultBCTorchRLModule"
# (checkpoint's module class, run's module class) -> (checkpoint prefix, run prefixes to try in order):
# default modules whose policy is the same network (one catalog's encoder and pi head, one forward) under
# other names. APPO's module is PPO's with target networks; BC's is PPO's actor without the value branch
# (an actor-critic PPO has its actor encoder at `encoder.actor_encoder`, a shared one at `encoder.encoder`).
# What a run's module has beyond the mapped names stays as built (PPO's value branch after BC), and is
# listed in the plan.
class Alike(NamedTuple):
    prefixes: tuple[tuple[str, tuple[str, ...]], ...]  # (checkpoint prefix, run prefixes to try in order)
    ignore: frozenset[str] = frozenset()  # architecture keys that mean nothing for the checkpoint's module


_SAME = Alike((("", ("",)),))
# BC's module has no value branch, so whether PPO's shares the encoder is not BC's to say.
_BC_POLICY = Alike((("_encoder.", ("encoder.actor_encoder.", "encoder.encoder.")), ("_pi_head.", ("pi.",))),
                   frozenset({"model_config.vf_share_layers"}))
ALIKE: dict[tuple[str, str], Alike] = {
    (_PPO, _APPO): _SAME,
    (_APPO, _PPO): _SAME,
    (_BC, _PPO): _BC_POLICY,
    (_BC, _APPO): _BC_POLICY,
}


# The `algo=` group whose default module each listed class is (for `rlgraft inspect`'s suggestions).
GROUP_OF_MODULE = {_PPO: "ppo", _APPO: "appo"}
# Architecture keys a listed pair differs in by construction (each algorithm's own module and catalog class).
ALIKE_KEYS = frozenset({"module_class", "catalog_class"})


def is_offline(name: str) -> bool:
    return name.upper() in OFFLINE


def check_offline(name: str, config: Any) -> None:
    """An offline algorithm without recorded data would fail in RLlib's validate() with a message about
    spaces; say what is missing and how to make it."""
    if is_offline(name) and not config.is_offline:
        raise RlgraftError(
            f"algo.name={name} learns from recorded episodes, and algo.offline_data.input_ names none",
            fix="record episodes from a trained policy with `rlgraft record +checkpoint=PATH episodes=N` and set "
                "algo.offline_data.input_=[FOLDER] algo.offline_data.input_read_episodes=true "
                "(experiment=bc_cartpole shows the whole setup)")


# RLlib's offline data pipeline (Ray Data) runs outside the trial's placement group: a pool of OfflinePreLearner
# actors (`map_batches_kwargs`, RLlib's default 2 actors of 1 CPU) and read tasks of 1 CPU. On 2 CPUs with the
# trial holding one, the default pool waits forever for the CPU its own read task needs (measured: "3/2 CPU"
# and no batch). Unless the user sizes it, one actor that shares the CPUs it is given runs it.
DATA_PIPELINE = {"concurrency": 1, "num_cpus": 0}
READ_TASK_CPUS = 1.0


def data_pipeline(name: str, given: dict[str, Any] | None) -> dict[str, Any] | None:
    """`map_batches_kwargs` for an offline algorithm: the user's, or rlgraft's fit (None: not offline)."""
    if not is_offline(name):
        return None
    given = dict(given or {})
    if "concurrency" in given or "num_cpus" in given:
        return given
    return {**DATA_PIPELINE, **given}


def data_cpus(config: Any) -> float:
    """CPUs the offline data pipeline asks of the cluster besides the trial (0 for an online run): the
    largest actor pool and one read task."""
    if not getattr(config, "is_offline", False):
        return 0.0
    kwargs = {"concurrency": 2, "num_cpus": 1.0} | dict(config.map_batches_kwargs or {})
    pool = kwargs["concurrency"]
    size = max(pool) if isinstance(pool, list | tuple) else pool
    return float(size or 1) * float(kwargs.get("num_cpus", 1.0)) + READ_TASK_CPUS


def alike(source_class: str, target_class: str) -> bool:
    return (source_class, target_class) in ALIKE


def ignored(source_class: str, target_class: str) -> frozenset[str]:
    """Architecture keys not compared for a listed pair: the two classes themselves, and the pair's own."""
    return ALIKE_KEYS | ALIKE[(source_class, target_class)].ignore


def correspondence(source_class: str, target_class: str, source: set[str], target: set[str]) -> dict[str, str]:
    """Run parameter name -> checkpoint parameter name, for two module classes the table lists (`{}` if it
    does not); of a prefix's candidates, the first under which the run's module has parameters."""
    out: dict[str, str] = {}
    pair = ALIKE.get((source_class, target_class))
    for src_prefix, candidates in pair.prefixes if pair else ():
        for dst_prefix in candidates:
            names = {dst_prefix + n.removeprefix(src_prefix): n for n in source if n.startswith(src_prefix)}
            hits = {d: s for d, s in names.items() if d in target}
            if hits:
                out.update(hits)
                break
    return out


def target_networks(module: Any, learner_class: Any) -> dict[str, str]:
    """Target-network parameter -> the parameter it follows, for a module built in the driver: the
    learner of an algorithm that needs target networks (APPO, DQN, SAC) makes them when it builds the
    module (`make_target_networks`), so a checkpoint's module holds them and the driver's copy is made
    the same way. `{}` for a module or algorithm without them."""
    from ray.rllib.core.rl_module.apis.target_network_api import TargetNetworkAPI

    required = learner_class.rl_module_required_apis() if learner_class is not None else []
    if not isinstance(module, TargetNetworkAPI) or TargetNetworkAPI not in required:
        return {}
    module.make_target_networks()
    return target_pairs(module)


def target_pairs(module: Any) -> dict[str, str]:
    """Target-network parameter -> the parameter it follows, for a module whose target networks exist
    (`{}` for a module without the API, or one whose algorithm never made them)."""
    from ray.rllib.core.rl_module.apis.target_network_api import TargetNetworkAPI

    if not isinstance(module, TargetNetworkAPI):
        return {}
    try:
        pairs = module.get_target_network_pairs()
    except AttributeError:  # APPO's module in PPO: the targets are made by APPO's learner only
        return {}
    prefix = {id(m): f"{n}." if n else "" for n, m in module.named_modules()}  # type: ignore[attr-defined]
    out: dict[str, str] = {}
    for main, target in pairs:
        for name in target.state_dict():
            out[prefix[id(target)] + name] = prefix[id(main)] + name
    return out
