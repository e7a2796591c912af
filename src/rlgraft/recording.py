"""`rlgraft record`: episodes from a trained policy, written in RLlib's offline format (what `algo=bc`
and `algo=marwil` read with `algo.offline_data.input_read_episodes=true`).

RLlib's own recording EnvRunner (`OfflineSingleAgentEnvRunner`) writes them, built from the config the
checkpoint's EnvRunner was built with and holding the checkpoint's module and connector state, so the
episodes are what the trained run would act. It logs a failed write and goes on; rlgraft reads the
files back and counts the episodes before it reports success.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rlgraft import checkpointable, checkpoints, discovery, storage
from rlgraft.errors import RlgraftError
from rlgraft.evaluation import stats
from rlgraft.schema import RecordConfig, to_record_config


def record_checkpoint(cfg: DictConfig | RecordConfig, output_dir: str) -> dict[str, Any]:
    """Record `episodes` episodes with the checkpoint's policy; write them and record.json."""
    c = to_record_config(cfg)
    if c.episodes < 1:
        raise RlgraftError(f"episodes={c.episodes}: nothing to record", fix="set episodes=N with N >= 1")
    ck = discovery.given(c)
    info = checkpoints.read(ck)
    if info.multi_agent:
        raise RlgraftError("rlgraft record writes single-agent episodes (RLlib's recording EnvRunner is "
                           "single-agent), and this checkpoint is of a multi-agent run",
                           found=f"modules: {', '.join(info.modules)}",
                           fix="record from a single-agent checkpoint")
    out = Path(c.output or Path(output_dir) / "episodes").expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise RlgraftError(f"`{out}` already holds files; recording into it would mix two datasets",
                           fix="choose an empty or new folder with output=DIR")
    if not (storage.at(ck) / "env_runner" / "class_and_ctor_args.pkl").is_file():
        raise RlgraftError(f"`{ck}` has no env_runner/ folder, which holds the config to act with",
                           fix="record from an algorithm checkpoint (a Tune trial's checkpoint_NNNNNN)")
    from rlgraft import runtime
    from rlgraft.schema import RayConfig

    runtime.quiet()
    runtime.connect(RayConfig(warm_imports=[]))  # RLlib writes the files with Ray Data
    episodes = checkpointable.record_episodes(ck, str(out), c.episodes, explore=c.explore, seed=c.seed)
    files, written = read_back(out)
    if written != c.episodes:
        raise RlgraftError(f"RLlib's recorder wrote {written} of {c.episodes} episodes to `{out}` (it logs a failed "
                           "write and goes on)", fix="check the folder is writable and has space, then record again")
    result = {"checkpoint": ck, "episodes": c.episodes, "explore": c.explore, "seed": c.seed,
              "output": str(out), "input_": [str(p) for p in sorted({f.parent.parent for f in files})],
              "env_steps": sum(_lengths(files)),
              "return": stats(episodes)}
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / "record.json").write_text(json.dumps(result, indent=2))
    return result


def read_back(folder: Path) -> tuple[list[Path], int]:
    """The parquet files under `folder` and the episodes they hold (one row per episode)."""
    import pyarrow.parquet as pq

    files = sorted(folder.rglob("*.parquet"))
    return files, sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def _lengths(files: list[Path]) -> list[int]:
    """Env steps per recorded episode, read back from RLlib's packed episode states."""
    import msgpack
    import msgpack_numpy as mnp
    import pyarrow.parquet as pq

    out = []
    for f in files:
        for item in pq.read_table(f).column("item").to_pylist():
            state = msgpack.unpackb(item, object_hook=mnp.decode)
            out.append(state["t"] - state["t_started"])
    return out


def render(result: dict[str, Any], run: str = "rlgraft run") -> str:
    r = result["return"]
    inputs = ",".join(result["input_"])
    return "\n".join([
        f"recorded {result['episodes']} episodes ({result['env_steps']} env steps, "
        f"{'sampled' if result['explore'] else 'deterministic'} actions) from {result['checkpoint']}",
        f"  return mean {r['mean']:.1f}, std {r['std']:.1f}, min {r['min']:.1f}, max {r['max']:.1f}",
        f"  written to {result['output']} (RLlib's offline format, one packed episode per row)",
        f"  train on them: {run} experiment=bc_cartpole 'algo.offline_data.input_=[{inputs}]'",
    ])
