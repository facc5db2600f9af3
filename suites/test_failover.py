"""Unplanned failover without load, for every catalogue drill that replaces the leader unplanned:
a new leader within the drill's budget, the first write through the frontend answered by it, and
the old leader back as a replica. Measurements in reports/<stack>/failover.json.
"""

from __future__ import annotations

import time

import pytest

from deployer.drills import report, trial
from deployer.drills.catalogue import CATALOGUE
from deployer.wait import wait_until
from suites.fixtures import drill_params

pytestmark = pytest.mark.chaos


def _write_through_frontend(stack) -> str:
    [[served_by]] = stack.sql(stack.spec.ports.haproxy_primary,
                              "INSERT INTO failover DEFAULT VALUES RETURNING host(inet_server_addr())")
    return served_by


@pytest.mark.parametrize("drill", drill_params(d for d in CATALOGUE if not d.planned))
def test_primary_fault_elects_a_new_leader_within_budget_and_the_old_one_rejoins(stack, drill):
    budget = drill.budget(stack.budgets)
    trial.converged(stack)
    stack.sql(stack.spec.ports.haproxy_primary, "CREATE TABLE IF NOT EXISTS failover (at timestamptz DEFAULT now())")
    old = stack.leader()
    start = time.monotonic()
    with drill.fault(stack, old.name):
        new = wait_until(f"a leader other than {old.name} within the budget {budget:g} s",
                         lambda: trial.leader_other_than(stack, old.name), timeout=budget, interval=0.25)
        elected = time.monotonic() - start
        wait_until(f"a write through the frontend answered by {new.name} ({new.address})",
                   lambda: _write_through_frontend(stack), lambda a: a == new.address, timeout=budget - elected,
                   interval=0.25)
        writable = time.monotonic() - start
    trial.converged(stack, rejoined=old.name)
    report.append_record(stack.reports / "failover.json", {
        "fault": drill.name, "old_leader": old.name, "new_leader": new.name, "budget_s": budget,
        "new_leader_s": round(elected, 1), "first_write_s": round(writable, 1),
        "rejoined_s": round(time.monotonic() - start, 1)})
