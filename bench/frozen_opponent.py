"""Transfer with a frozen opponent: solve single-agent Pendulum, graft the policy into p1 of a two-agent
run with `restore.freeze=[p1]`, train for a fixed budget, and print the returns per module per iteration.

    python bench/frozen_opponent.py [budget_env_steps]    # default 40000
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from common import machine

import rlgraft


def main(budget: int = 40000) -> None:
    out = Path(tempfile.mkdtemp(prefix="rlgraft-frozen-"))
    quiet = {"printer": lambda *_: None}
    solved = rlgraft.run(rlgraft.compose(["experiment=pendulum_solve"]), output_dir=str(out / "solve"), **quiet)
    print(f"source: pendulum_solve {solved['metrics']['env_runners/episode_return_mean']:.1f} after "
          f"{solved['env_steps']} env steps")
    graft = rlgraft.compose(["experiment=multi_pendulum_solve", f"+resume={solved['checkpoint']}",
                             "restore.modules={p1:default_policy}", "restore.freeze=[p1]",
                             f"stop.num_env_steps_sampled_lifetime={budget}",
                             "stop.env_runners.agent_episode_returns_mean=null"])
    rows: list[str] = []
    result = rlgraft.run(graft, output_dir=str(out / "frozen"), printer=rows.append)
    trial = Path(result["trials"][0]["path"])
    print(f"frozen p1, {budget} env steps ({machine()}):")
    print("| iteration | env steps | p0 (learning) | p1 (frozen, grafted) |\n|---|---|---|---|")
    for line in (trial / "result.json").read_text().splitlines():
        r = json.loads(line)
        m = r["env_runners"].get("module_episode_returns_mean", {})
        print(f"| {r['training_iteration']} | {r['num_env_steps_sampled_lifetime']} | "
              f"{m.get('p0', float('nan')):.1f} | {m.get('p1', float('nan')):.1f} |")
    print(f"frozen verified on: {result['metrics'].get('rlgraft/frozen_verified_on')}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40000)
