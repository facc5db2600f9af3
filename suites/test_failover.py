"""Unplanned failover without load: the target's infrastructure faults against Patroni.

The budgets come from the spec (``crash_failover_budget_s``: lease expiry, one Patroni loop and
both health checks); the drills under load, with write histories and checkers, build on these.
"""

from __future__ import annotations

import json
import time

import pytest

from deployer import patroni
from deployer.faults import crashed_vm, isolated
from deployer.wait import wait_until

pytestmark = pytest.mark.destructive
REJOIN_S = 90  # a restarted or healed node catches up (pg_rewind if needed) well within this


def _leader_other_than(stack, old: str):
    members = stack.cluster()
    leaders = [m for m in members if m.role == "leader" and m.state == "running"]
    return leaders[0] if len(leaders) == 1 and leaders[0].name != old else None


def record(stack, result: dict) -> None:
    """Append one measurement to reports/<stack>/failover.json (measured next to its budget)."""
    path = stack.reports / "failover.json"
    results = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps(results + [result], indent=2) + "\n")


def _write_through_frontend(stack) -> str:
    [[served_by]] = stack.sql(stack.spec.ports.haproxy_primary,
                              "INSERT INTO failover DEFAULT VALUES RETURNING host(inet_server_addr())")
    return served_by


def _healthy_again(stack, old: str | None):
    n = len(stack.spec.nodes)
    what = f"{old} back as a streaming replica, lag 0, one leader" if old else "a healthy cluster"
    members = wait_until(what, stack.cluster,
                         lambda m: patroni.healthy(m, n) and (old is None or any(x.name == old and x.role == "replica" for x in m)),
                         timeout=REJOIN_S)
    assert len({m.timeline for m in members}) == 1, f"timelines disagree after rejoin: {members}"


@pytest.mark.parametrize("fault", [pytest.param(crashed_vm, id="crash-primary-vm"),
                                   pytest.param(isolated, id="isolate-primary")])
def test_primary_fault_elects_a_new_leader_within_budget_and_the_old_one_rejoins(stack, fault):
    capability = "crash_vm" if fault is crashed_vm else "isolate"
    if capability not in stack.target.capabilities:
        pytest.skip(f"target {stack.target.name} lacks capability {capability}")
    budget = stack.spec.crash_failover_budget_s
    _healthy_again(stack, None)
    stack.sql(stack.spec.ports.haproxy_primary, "CREATE TABLE IF NOT EXISTS failover (at timestamptz DEFAULT now())")
    old = stack.leader()
    start = time.monotonic()
    with fault(stack, old.name):
        new = wait_until(f"a leader other than {old.name} within the budget {budget:g} s",
                         lambda: _leader_other_than(stack, old.name), timeout=budget, interval=0.25)
        elected = time.monotonic() - start
        wait_until(f"a write through the frontend answered by {new.name} ({new.address})",
                   lambda: _write_through_frontend(stack), lambda a: a == new.address, timeout=budget - elected,
                   interval=0.25)
        writable = time.monotonic() - start
    _healthy_again(stack, old.name)
    record(stack, {"fault": fault.__name__, "old_leader": old.name, "new_leader": new.name, "budget_s": budget,
                   "new_leader_s": round(elected, 1), "first_write_s": round(writable, 1),
                   "rejoined_s": round(time.monotonic() - start, 1)})
