"""``make bench-deploy`` (``python -m deployer.targets.local.bench``): time a cold deploy (image bake included) and a warm one on the local
target, measure the stack's memory, and write ``reports/deploy.json``:

    {"cold": {stage: seconds, "total": s}, "warm": {...}, "memory_mib": N, "targets": {...}}

Cold uses an empty image cache in a temporary directory (the shared cache is left alone); warm
reuses the image. Each deploy is torn down before the next, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deployer.paths import REPORTS
from deployer.spec import DEFAULT_SPEC, load_spec
from deployer.state import STAGES, StackState
from deployer.targets.local.network import Layout, ns_pids

REPORT = REPORTS / "deploy.json"
TARGETS = {"warm_total_s": 90, "cold_total_s": 360}


def _cli(*args: str, env: dict | None = None) -> None:
    subprocess.run([sys.executable, "-m", "deployer.cli", *args], check=True, env=env)


def deploy_once(name: str, image_cache: str | None) -> dict:
    """One full ``up`` (timed per stage, from the recorded state) followed by ``down``."""
    env = {**os.environ, **({"PGHA_IMAGE_CACHE": image_cache} if image_cache else {})}
    start = time.monotonic()
    try:
        _cli("up", "--name", name, env=env)
        total = time.monotonic() - start
        state = StackState.load(name)
        result = {stage: state.stages[stage].seconds for stage in STAGES}
        result["total"] = round(total, 1)
        result["memory_mib"] = stack_memory_mib(name)
        return result
    finally:
        _cli("down", "--name", name, env=env)


def stack_memory_mib(name: str) -> float:
    """Proportional set size of every process in the stack's VM and load balancer namespaces."""
    layout = Layout(load_spec(DEFAULT_SPEC), name)
    total_kib = 0
    for ns in [layout.lb, *(layout.node_ns(n) for n in layout.spec.nodes)]:
        for pid in ns_pids(ns):
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total_kib += int(line.split()[1])
            except OSError:
                continue
    return round(total_kib / 1024, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="pgha")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pgha-cold-image-", dir="/var/tmp") as cold_cache:
        cold = deploy_once(args.name, cold_cache)
    warm = deploy_once(args.name, None)
    report = {"cold": {k: v for k, v in cold.items() if k != "memory_mib"},
              "warm": {k: v for k, v in warm.items() if k != "memory_mib"},
              "memory_mib": warm["memory_mib"], "targets": TARGETS,
              "within_targets": {"warm": warm["total"] <= TARGETS["warm_total_s"],
                                 "cold": cold["total"] <= TARGETS["cold_total_s"]}}
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
