"""inspect, evaluate (+render) and export on real checkpoints made by tiny runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rlgraft
from rlgraft import evaluation
from rlgraft.evaluation import evaluate_checkpoint
from rlgraft.schema import EnvConfig, EvaluateConfig

ROOT = Path(__file__).resolve().parents[1]


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"experiments.{module}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("fixture, modules", [("single_run", ["default_policy"]), ("multi_run", ["p0", "p1"])])
def test_inspect_lists_tree_modules_and_overrides(fixture, modules, request):
    run = request.getfixturevalue(fixture)
    res = cli("inspect", run["output_dir"], "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["checkpoint"] == run["checkpoint"]
    assert sorted(report["modules"]) == modules
    assert f"learner_group/learner/rl_module/{modules[-1]}" in report["components"]
    m = report["modules"][modules[0]]
    assert "Box" in m["observation_space"] and m["fcnet_hiddens"] == [16, 16]
    assert m["num_params"] == sum(int(np.prod(s)) for s in m["params"].values())
    assert report["env_steps"] == run["env_steps"] and report["ray_version"].startswith("2.")
    assert all("restore.modules=" in o and "fcnet_hiddens=[16,16]" in o for o in report["graft_overrides"])
    text = cli("inspect", run["checkpoint"]).stdout
    assert "graft into a new run with" in text and "restricted unpickler" in text


def test_inspect_bad_path_is_a_clear_error(tmp_path):
    res = cli("inspect", str(tmp_path))
    assert res.returncode == 2 and "not a checkpoint" in res.stderr and "Traceback" not in res.stderr


def test_evaluate_single_with_render(single_run, tmp_path):
    res = cli("evaluate", f"+checkpoint={single_run['output_dir']}", "episodes=2", "render=true",
              f"hydra.run.dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads((tmp_path / "evaluation.json").read_text())
    stats = result["per_module"]["default_policy"]
    assert stats["n"] == 2 and stats["min"] <= stats["mean"] <= stats["max"] < 0
    import imageio.v2 as imageio

    frames = imageio.mimread(tmp_path / "episode.gif")
    assert len(frames) == result["render"]["frames"] == 100  # 200 steps, every 2nd frame
    assert frames[0].ndim == 3 and frames[0].std() > 0  # a real picture, not a blank


def test_evaluate_multi_reports_each_agent_and_policy(multi_run, tmp_path):
    result = evaluate_checkpoint(EvaluateConfig(checkpoint=multi_run["checkpoint"], episodes=2), str(tmp_path))
    assert set(result["per_agent"]) == {"0", "1"} and set(result["per_module"]) == {"p0", "p1"}
    assert evaluation.env_of(multi_run["checkpoint"]).num_agents == 2
    assert (tmp_path / "evaluation.json").is_file()


def test_evaluate_is_deterministic_by_default(single_run, tmp_path):
    a = evaluate_checkpoint(EvaluateConfig(checkpoint=single_run["checkpoint"], episodes=1), str(tmp_path / "a"))
    b = evaluate_checkpoint(EvaluateConfig(checkpoint=single_run["checkpoint"], episodes=1), str(tmp_path / "b"))
    assert a["per_agent"] == b["per_agent"]


def test_evaluate_unknown_module_and_env_errors(multi_run, tmp_path):
    res = cli("export", f"+checkpoint={multi_run['checkpoint']}", "module_id=p9", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 2 and "'p9' is not in the checkpoint" in res.stderr
    with pytest.raises(rlgraft.RlgraftError, match="NoSuch-v0"):
        evaluate_checkpoint(EvaluateConfig(checkpoint=multi_run["checkpoint"], env=EnvConfig(id="NoSuch-v0")),
                            str(tmp_path))
    with pytest.raises(rlgraft.RlgraftError, match="lacks"):
        evaluate_checkpoint(EvaluateConfig(checkpoint=multi_run["checkpoint"], env=EnvConfig(id="Pendulum-v1")),
                            str(tmp_path))


def test_export_round_trip_without_ray(multi_run, tmp_path):
    res = cli("export", f"+checkpoint={multi_run['checkpoint']}", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-2000:]
    obs = np.random.default_rng(0).uniform([-1, -1, -8], [1, 1, 8], size=(16, 3)).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    # A fresh interpreter where importing Ray is impossible: only torch loads the files.
    code = (
        "import sys, json, numpy as np, torch; sys.modules['ray'] = None\n"
        f"obs = torch.from_numpy(np.load('{tmp_path}/obs.npy'))\n"
        "out = {}\n"
        "for m in ('p0', 'p1'):\n"
        f"    meta = json.load(open(f'{tmp_path}/{{m}}.json'))\n"
        f"    model = torch.jit.load(f'{tmp_path}/{{meta[\"file\"]}}')\n"
        "    out[m] = model(obs).tolist()\n"
        "print(json.dumps(out))\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    exported = json.loads(ran.stdout)
    for m in ("p0", "p1"):
        expected = rlgraft.load_policy(multi_run["checkpoint"], m)(obs)
        np.testing.assert_allclose(np.asarray(exported[m]), expected, rtol=1e-5, atol=1e-6)
        assert np.all(np.abs(expected) <= 2.0)  # env units: Pendulum torque in [-2, 2]
        meta = json.loads((tmp_path / f"{m}.json").read_text())
        assert meta["checkpoint"] == multi_run["checkpoint"] and meta["action_space"]["high"] == [2.0]
