"""Drills under load (Jepsen in pytest): a Locust workload writes through the frontend, a fault
hits the primary and is healed, and checkers judge the recorded history:
no acknowledged write lost, never two primaries acknowledging at once, and the write gap within
the budget derived from the spec. Each drill records its numbers in reports/<stack>/drills.json.
"""

from __future__ import annotations

import json
import time

import pytest

from deployer import checkers, patroni
from deployer.faults import crashed_vm, switchover
from deployer.report import plot_timeline
from deployer.wait import wait_until
from deployer.workload import running

pytestmark = pytest.mark.destructive
REJOIN_S = 90

DRILLS = {
    # name: (fault, capability it needs or None, budget from the spec)
    "switchover": (switchover, None, lambda spec: spec.switchover_budget_s),
    "crash-primary-vm": (crashed_vm, "crash_vm", lambda spec: spec.crash_failover_budget_s),
}


def _converged(stack) -> list[patroni.Member]:
    n = len(stack.spec.nodes)
    return wait_until("one leader, every replica streaming with lag 0", stack.cluster,
                      lambda m: patroni.healthy(m, n), timeout=REJOIN_S)


def _record(stack, result: dict) -> None:
    path = stack.reports / "drills.json"
    results = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([r for r in results if r["drill"] != result["drill"]] + [result], indent=2) + "\n")


@pytest.mark.parametrize("drill", list(DRILLS))
def test_drill(stack, drill):
    fault, capability, budget_of = DRILLS[drill]
    if capability and capability not in stack.target.capabilities:
        pytest.skip(f"target {stack.target.name} lacks capability {capability}")
    budget = budget_of(stack.spec)
    _converged(stack)
    stack.sql(stack.spec.ports.haproxy_primary,
              "CREATE TABLE IF NOT EXISTS drill_history (key text PRIMARY KEY, at timestamptz DEFAULT now())")
    run_dir = stack.reports / "drills" / f"{drill}-{int(time.time())}"
    old = stack.leader()
    with running(stack, run_dir) as workload:
        workload.wait_for_writes(20)
        fault_at = time.time()
        with fault(stack, old.name):
            wait_until(f"a leader other than {old.name}",
                       lambda: next((m for m in stack.cluster() if m.role == "leader" and m.name != old.name), None),
                       timeout=budget + 10)
            workload.wait_for_writes(20, timeout=budget + 10)
        heal_at = time.time()
        members = _converged(stack)
        workload.wait_for_writes(20)
    history = workload.history()
    final = {row[0] for row in stack.sql(stack.spec.ports.haproxy_primary,
                                         f"SELECT key FROM drill_history WHERE key LIKE '{run_dir.name}-%'")}
    sets = checkers.check_set(history, final)
    writer = checkers.check_single_writer(history)
    gap = checkers.check_write_gap(history, fault_at, heal_at, budget_s=budget)
    result = {"drill": drill, "old_leader": old.name, "new_leader": next(m.name for m in members if m.role == "leader"),
              "budget_s": budget, "write_gap_s": round(gap.gap_s, 2), "within_budget": gap.gap_s <= budget,
              "set": sets.summary, "single_writer": writer.summary, "history": str(run_dir / "history")}
    result["timeline_plot"] = str(plot_timeline(history, fault_at, heal_at, gap, run_dir / "timeline.png",
                                                f"{drill}: {old.name} -> {result['new_leader']}, write gap "
                                                f"{gap.gap_s:.1f} s (budget {budget:g} s)"))
    _record(stack, result)
    assert sets.valid, sets.summary
    assert writer.valid, writer.summary
    assert len({m.timeline for m in members}) == 1, f"timelines disagree after the drill: {members}"
    assert gap.gap_s <= budget, f"write gap {gap.gap_s:.1f} s exceeds the budget {budget:g} s ({gap.summary})"
