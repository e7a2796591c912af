"""Warm Ray workers (`rlgraft/worker_site/sitecustomize.py`): what runs in which process, without Ray
(fresh interpreters started the way Ray starts its workers), and when a real local runtime starts them;
the real run is in test_startup.py."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import rlgraft

SITE = Path(rlgraft.__file__).parent / "worker_site"
PROBE = """
import os, sys, types
import ray._private.worker as w
wrapped = w.Worker.main_loop.__qualname__ != "Worker.main_loop"
before = "json.tool" in sys.modules
stub = types.SimpleNamespace(core_worker=types.SimpleNamespace(run_task_loop=lambda: None))
try:
    w.Worker.main_loop(stub)  # the task loop: imports first when wrapped, then Ray's own (stubbed) loop
except SystemExit:
    pass
print(wrapped, before, "json.tool" in sys.modules, w.Worker.main_loop.__qualname__ == "Worker.main_loop",
      os.environ.get("CHAINED"))
"""


def probe(tmp_path: Path, name: str, extra_path: str = "", parent_age_s: float = 0.0) -> list[str]:
    """Run PROBE as `name`, the child of a fresh shell (the raylet's place) that waits `parent_age_s` first."""
    script = tmp_path / name
    script.write_text(PROBE)
    env = {**os.environ, "RLGRAFT_WARM_IMPORTS": "json.tool", "RLGRAFT_WARM_WINDOW_S": "0.5",
           "PYTHONPATH": os.pathsep.join(p for p in (str(SITE), extra_path) if p)}
    env.pop("CHAINED", None)
    cmd = f"sleep {parent_age_s}; {shlex.quote(sys.executable)} {shlex.quote(str(script))}; exit $?"
    out = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_a_ray_worker_imports_the_modules_before_its_first_task(tmp_path):
    wrapped, before, after, restored, _ = probe(tmp_path, "default_worker.py")
    assert wrapped == "True" and before == "False"  # registered first: nothing imported yet
    assert after == "True" and restored == "True"  # imported in the task loop's thread, then Ray's loop as is


def test_a_worker_started_later_for_waiting_work_is_left_alone(tmp_path):
    wrapped, _, after, _, _ = probe(tmp_path, "default_worker.py", parent_age_s=1.5)
    assert wrapped == "False" and after == "False"


def test_other_processes_import_nothing(tmp_path):
    wrapped, _, after, _, _ = probe(tmp_path, "driver.py")
    assert wrapped == "False" and after == "False"


def test_the_hidden_sitecustomize_still_runs(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['CHAINED'] = 'yes'\n")
    assert probe(tmp_path, "driver.py", str(other))[4] == "yes"
    assert probe(tmp_path, "default_worker.py", str(other))[4] == "yes"


PRESTART_PROBE = """
import glob, os, sys
from datetime import datetime
import ray
from rlgraft import runtime
from rlgraft.schema import RayConfig
ray_cfg = RayConfig(num_cpus=2)
if sys.argv[1] == "off":
    os.environ["RLGRAFT_PRESTART"] = "0"
runtime.connect(ray_cfg)
logs = ray._private.worker._global_node.get_logs_dir_path()
def at(line):
    return datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()
started = [at(line) for line in open(os.path.join(logs, "raylet.out")) if "Started worker process" in line]
driver = glob.glob(os.path.join(logs, f"python-core-driver-*_{os.getpid()}.log"))[0]
registered = at(next(line for line in open(driver) if "Constructing CoreWorkerProcess" in line))
print(len(started), min(started) < registered)
ray.shutdown()
"""


def test_a_local_runtime_starts_its_idle_workers_before_the_driver_registers(tmp_path):
    """Ray's own default starts them when the first driver registers (the end of `ray.init`); rlgraft's
    local runtime has the raylet start them as it comes up, so their warm-up import starts ~0.7 s earlier."""
    script = tmp_path / "prestart.py"
    script.write_text(PRESTART_PROBE)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RLGRAFT_PRESTART")}
    runs = {how: subprocess.run([sys.executable, str(script), how], env=env, capture_output=True, text=True,
                                timeout=300) for how in ("on", "off")}
    for how, out in runs.items():
        assert out.returncode == 0, (how, out.stderr[-3000:])
    assert runs["on"].stdout.split() == ["2", "True"]  # one idle worker per CPU, before the driver
    assert runs["off"].stdout.split()[1] == "False"  # the test tells the two apart: Ray's default is later
