"""What no launcher can go below here: fresh processes that only import, or only start Ray.

Usage: python bench/floor.py [runs]
Each row is a whole `python -c ...` process, timed from start to exit, `runs` times (median, min,
max): the interpreter alone, torch, ray, RLlib's PPO (what a trial needs before its first env step),
and, inside one process, `import ray` + `ray.init` of a local runtime (no dashboard; the time to
`ray.init`'s return, then a normal `ray.shutdown`, not counted).
A run's first env step needs at least RLlib's import and a runtime, in whichever process.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from common import machine

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
CASES = {
    "python -c pass": "pass",
    "import torch": "import torch",
    "import ray": "import ray",
    "import ray.rllib.algorithms.ppo": "import ray.rllib.algorithms.ppo",
}
RAY_INIT = "import ray + ray.init(num_cpus=2, include_dashboard=False), in the process"
INIT = ("import time; t = time.perf_counter(); import ray; "
        "ray.init(address='local', num_cpus=2, include_dashboard=False, log_to_driver=False); "
        "print(time.perf_counter() - t); "
        "ray.shutdown()")
times: dict[str, list[float]] = {k: [] for k in [*CASES, RAY_INIT]}
for i in range(runs):
    for label, code in CASES.items():
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times[label].append(time.perf_counter() - start)
        print(f"run {i + 1}: {label}: {times[label][-1]:.2f} s", flush=True)
    out = subprocess.run([sys.executable, "-c", INIT], check=True, capture_output=True, text=True).stdout
    times[RAY_INIT].append(float(out.split()[-1]))
    print(f"run {i + 1}: {RAY_INIT}: {times[RAY_INIT][-1]:.2f} s", flush=True)
print(machine(), "|", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
print("\n| whole process | median s | min - max |\n|---|---|---|")
for label, ts in times.items():
    print(f"| `{label}` | {statistics.median(ts):.2f} | {min(ts):.2f} - {max(ts):.2f} |")
