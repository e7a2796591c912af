"""`inspect`: a checkpoint's component tree, modules, counters and ready-to-paste graft overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlgraft import algorithms, architecture, checkpoints, discovery


def inspect(path: str, base: str = ".", pick: str = "latest", metric: str = "") -> dict[str, Any]:
    """Everything about a checkpoint, read without running code from it."""
    ck, how = discovery.resolve(path, base=str(Path(base).resolve()), pick=pick, metric=metric)
    info = checkpoints.read(ck)
    params = checkpoints.run_params(ck)
    modules = {
        mid: {
            "observation_space": str(m.observation_space), "action_space": str(m.action_space),
            "module_class": m.module_class, "num_params": m.num_params,
            "fcnet_hiddens": m.model_config.get("fcnet_hiddens"),
            "fcnet_activation": m.model_config.get("fcnet_activation"),
            "params": {k: list(v) for k, v in m.params.items()},
        } for mid, m in info.modules.items()
    }
    algorithm = (architecture.checkpoint_algorithm(ck) or "PPO").rpartition(".")[2]
    config = {"algorithm": algorithm} | {k: params[k] for k in (
        "env", "lr", "gamma", "lambda", "num_epochs", "minibatch_size", "train_batch_size_per_learner",
        "num_env_runners", "seed") if k in params}
    first = next(iter(info.modules.values()))
    return {
        "checkpoint": ck, "chosen": how, "ray_version": info.ray_version,
        "checkpoint_version": info.checkpoint_version, "training_iteration": info.training_iteration,
        "env_steps": info.counters.get("num_env_steps_sampled_lifetime"),
        "components": info.components, "modules": modules, "run_config": config,
        "graft_overrides": graft_overrides(list(info.modules), first.model_config, algorithm,
                                           str(params.get("env") or "Pendulum-v1"),
                                           architecture.dotted(first.module_class)),
        "safety": "read with a restricted unpickler: numpy arrays, gymnasium spaces and builtins "
                  "only; classes are named, not imported. " + checkpoints.UNTRUSTED_NOTE,
    }


def graft_overrides(modules: list[str], model_config: dict[str, Any], algorithm: str = "PPO",
                    env: str = "Pendulum-v1", module_class: str = "") -> list[str]:
    """Overrides that restore this checkpoint or graft its modules into common targets (same network)."""
    out: list[str] = []
    hidden = model_config.get("fcnet_hiddens")
    net = f" algo.rl_module.model_config.fcnet_hiddens=[{','.join(map(str, hidden))}]" if hidden else ""
    pendulum_ppo = algorithm == "PPO" and env == "Pendulum-v1"
    if modules == ["default_policy"]:
        if not pendulum_ppo and not algorithms.is_offline(algorithm):  # the same algorithm and env (an offline
            out.append(f"algo={algorithm.lower()} env.id={env} '~experiment'")  # one needs its data named too)
        graft = "'restore.modules={default_policy:default_policy}'"
        for source, target in algorithms.ALIKE:  # into another algorithm whose default module is this network
            if source == module_class and (group := algorithms.GROUP_OF_MODULE.get(target)):
                out.append(f"algo={group} env.id={env} '~experiment' {graft}")
        if pendulum_ppo:
            out.append("experiment=multi_pendulum 'restore.modules={p1:default_policy}'")
            out.append("experiment=multi_pendulum 'restore.modules={p0:default_policy,p1:default_policy}'")
    else:
        for m in modules:
            out.append(f"experiment=pendulum 'restore.modules={{default_policy:{m}}}'")
        if len(modules) == 2:
            a, b = modules
            out.append(f"experiment=multi_pendulum 'restore.modules={{{a}:{b},{b}:{a}}}'")
    return [o + net for o in out]


def render(report: dict[str, Any], program: str = "rlgraft run") -> str:
    lines = [f"checkpoint   {report['checkpoint']}  ({report['chosen']})",
             f"ray          {report['ray_version']} (checkpoint format {report['checkpoint_version']})",
             f"trained      iteration {report['training_iteration']}, "
             f"{int(report['env_steps'] or 0)} env steps"]
    if report["run_config"]:
        lines.append("config       " + ", ".join(f"{k}={v}" for k, v in report["run_config"].items()))
    lines.append("components")
    lines += [f"  {c}" for c in report["components"]]
    lines.append("modules")
    for mid, m in report["modules"].items():
        lines.append(f"  {mid}: obs {m['observation_space']}  action {m['action_space']}")
        lines.append(f"      {m['module_class'].rsplit('.', 1)[-1]}, hidden {m['fcnet_hiddens']} "
                     f"{m['fcnet_activation'] or ''}, {m['num_params']} parameters")
    lines.append("graft into a new run with")
    lines += [f"  {program} {o} '+resume=\"{report['checkpoint']}\"'"
              for o in report["graft_overrides"]]
    lines.append(f"note         {report['safety']}")
    return "\n".join(lines)
