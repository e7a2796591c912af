"""RLlib's tuned example `rllib/tuned_examples/ppo/multi_agent_pendulum_ppo.py` (2 agents, policies
p0 and p1), adapted to 2 CPUs: one EnvRunner instead of four. It stops when every agent's mean
return is >= -300 (the issue's "-300 per agent"; the example's own stop is the agents' sum >= -600)
or at 500k env steps.

Usage: python bench/anchor_multi_pendulum.py SEED
"""

import os
import sys

# Tune's own ray.init() would join a stale `ray start` address (/tmp/ray/ray_current_cluster); as raw_ppo.py.
os.environ.setdefault("RAY_ADDRESS", "local")

from ray import tune
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.examples.envs.classes.multi_agent import MultiAgentPendulum
from ray.tune.registry import register_env

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
num_agents = 2
register_env("multi_agent_pendulum", lambda cfg: MultiAgentPendulum(config=cfg))
config = (
    PPOConfig()
    .environment("multi_agent_pendulum", env_config={"num_agents": num_agents})
    .env_runners(num_env_runners=1)
    .training(lr=0.0003, lambda_=0.1, vf_clip_param=10.0, num_epochs=6)
    .rl_module(model_config={"fcnet_activation": "relu"})
    .multi_agent(policy_mapping_fn=lambda aid, *arg, **kw: f"p{aid}",
                 policies={f"p{i}" for i in range(num_agents)})
    .debugging(seed=seed)
)


def every_agent_solved(trial_id: str, result: dict) -> bool:
    per_agent = result["env_runners"].get("agent_episode_returns_mean", {})
    return result["num_env_steps_sampled_lifetime"] >= 500_000 or (
        len(per_agent) == num_agents and all(v >= -300 for v in per_agent.values()))


result = tune.Tuner(config.algo_class, param_space=config,
                    run_config=tune.RunConfig(stop=every_agent_solved)).fit()[0]
returns = result.metrics["env_runners"]["agent_episode_returns_mean"]
print(f"SOLVE {int(all(v >= -300 for v in returns.values()))} returns {sorted(returns.values())} "
      f"steps {result.metrics['num_env_steps_sampled_lifetime']}")
