"""``make bench-smoke``: how long ``pytest -m smoke --stack NAME`` takes on a live stack, and proof
that it changed nothing; writes ``reports/smoke.json``:

    {"runs_s": [...], "median_s": s, "goal_s": 10, "within_goal": bool, "unchanged": bool, "changed": [...]}

"Nothing changed" compares what the platform reports before and after: the rules in force, the
backend pool, Patroni's dynamic configuration and every member's role and timeline.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time

from deployer import patroni
from deployer.paths import REPORTS, SUITES
from deployer.stack import Stack

GOAL_S = 10
RUNS = 3


def snapshot(stack: Stack) -> dict:
    """What smoke must leave as it found it, as the platform reports it."""
    leader = stack.leader().name
    return {"rules": sorted(map(dataclasses.astuple, stack.target.security_rules())),
            "pool": [dataclasses.astuple(m) for m in stack.target.backend_pool()],
            "dcs_config": patroni.get(stack.target, leader, "/config"),
            "roles": sorted((m.name, m.role, m.timeline) for m in stack.cluster())}


def timed_smoke(name: str) -> float:
    """Seconds of one ``pytest -m smoke --stack NAME`` (it must pass)."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "pytest", "-m", "smoke", "-q", "-p", "no:cacheprovider", str(SUITES),
                    "--stack", name, "--keep-stack"], check=True, capture_output=True)
    return round(time.monotonic() - start, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="pgha")
    name = parser.parse_args().name
    stack = Stack.attach(name)
    before = snapshot(stack)
    runs = [timed_smoke(name) for _ in range(RUNS)]
    after = snapshot(stack)
    median = statistics.median(runs)
    report = {"runs_s": runs, "median_s": median, "goal_s": GOAL_S, "within_goal": median <= GOAL_S,
              "unchanged": before == after, "changed": sorted(k for k in before if before[k] != after[k])}
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "smoke.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
