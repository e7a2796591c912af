"""rlgraft as users install it: a built wheel in a fresh venv, run from a folder outside the checkout,
with the user's own presets and env module next to them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """The wheel built from this checkout, installed into a new venv that has no path to the checkout.

    The new venv reaches the already installed dependencies (ray, torch, hydra) through a .pth file
    naming this environment's site-packages; its own rlgraft is the wheel (the editable install's
    finder is not loaded: .pth files in an added directory are not processed)."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(root / "dist")], check=True, capture_output=True, timeout=300)
    wheel = next((root / "dist").glob("rlgraft-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    with zipfile.ZipFile(wheel) as zf:  # pip installs a wheel by unpacking it; the console script is added below
        zf.extractall(site)
        names = zf.namelist()
    script = venv / "bin" / "rlgraft"
    script.write_text(f"#!{venv}/bin/python\nimport sys\nfrom rlgraft.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return {"venv": venv, "names": names, "site": site}


def in_venv(venv: Path, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_wheel_ships_configs_and_no_top_level_experiments(wheel_venv):
    names = wheel_venv["names"]
    shipped = {f"rlgraft/conf/{p.relative_to(ROOT / 'conf')}" for p in (ROOT / "conf").rglob("*.yaml")}
    assert shipped <= set(names), shipped - set(names)  # every config of the checkout is in the wheel
    assert not any(n.startswith(("experiments/", "conf/", "tests/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.Path(next((wheel_venv["venv"].parent / "dist").glob("*.whl")), entry).read_text()
    assert "rlgraft = rlgraft.cli:main" in text


def test_installed_rlgraft_runs_from_any_folder(wheel_venv, tmp_path):
    venv = wheel_venv["venv"]
    where = in_venv(venv, str(venv / "bin/python"), "-c", "import rlgraft, rlgraft.configs as c; "
                    "print(rlgraft.__file__); print(c.CONF_DIR)", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(wheel_venv["site"])) for line in where.stdout.split())  # not the checkout
    helped = in_venv(venv, "rlgraft", "run", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "pendulum_solve" in helped.stdout and "rlgraft run" in helped.stdout
    res = in_venv(venv, "rlgraft", "run", *TINY, f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["env_steps"] == 256
    assert summary["resume_command"].startswith("rlgraft run ")
    shown = in_venv(venv, "rlgraft", "inspect", str(tmp_path / "out"), cwd=tmp_path)
    assert shown.returncode == 0 and "rlgraft run experiment=multi_pendulum" in shown.stdout


def test_your_own_project_with_its_preset_and_env(wheel_venv, tmp_path):
    """The README's "Your own project": a preset and an env module in the user's folder."""
    project = tmp_path / "my_project"
    shutil.copytree(ROOT / "examples" / "my_project", project)
    venv = wheel_venv["venv"]
    res = in_venv(venv, "rlgraft", "run", "-cd", "conf", "experiment=corridor",
                  "stop.num_env_steps_sampled_lifetime=2000", "algo.training.num_epochs=1",
                  f"hydra.run.dir={tmp_path / 'out'}", cwd=project)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["config"]["env"]["id"] == "my_envs:Corridor"
    assert summary["config"]["env"]["kwargs"] == {"length": 8} and summary["config"]["name"] == "corridor"
    assert summary["metrics"]["env_runners/episode_len_mean"] >= 8  # the corridor is 8 long: my kwargs arrived
    assert "env_runners/goal_reached" in summary["metrics"]  # my callbacks class ran in the EnvRunners
    # A typo in the user's own preset fails as rlgraft's own would.
    bad = in_venv(venv, "rlgraft", "run", "-cd", "conf", "experiment=corridr", cwd=project, timeout=120)
    assert bad.returncode != 0 and "corridr" in bad.stderr
