"""One drill, run: a healthy cluster, a Locust workload through the frontend, the catalogue's fault
on the leader and its heal, the cluster converged again, and the checkers' verdicts on the history.

The suites assert on a ``Trial``; this module only measures and records (``drills.json``, the
history and a timeline plot under ``reports/<stack>/drills/<drill>-<time>/``).
"""

from __future__ import annotations

import dataclasses
import time

from deployer import patroni
from deployer.drills import checkers, report
from deployer.drills.catalogue import Drill
from deployer.stack import Stack
from deployer.wait import wait_until
from load import runner
from load.history import SCHEMA, keys_of_run_query

#: Acknowledged writes that show the workload flows: before the fault, during it, after the heal.
FLOWING_WRITES = 20


def converged(stack: Stack, rejoined: str | None = None) -> list[patroni.Member]:
    """Wait until one leader runs and every other node streams with lag 0 on one timeline (and, with
    ``rejoined``, that node is back as a replica); the members. Deadline: ``budgets.rejoin_s``."""
    n = len(stack.spec.nodes)
    what = "one leader, every replica streaming with lag 0, one timeline" + (
        f", {rejoined} back as a replica" if rejoined else "")
    return wait_until(what, stack.cluster,
                      lambda m: patroni.healthy(m, n) and len({x.timeline for x in m}) == 1
                      and (rejoined is None or any(x.name == rejoined and x.role == "replica" for x in m)),
                      timeout=stack.budgets.rejoin_s)


def leader_other_than(stack: Stack, old: str) -> patroni.Member | None:
    """The one running leader if it is not ``old``, else None."""
    leaders = [m for m in stack.cluster() if m.role == "leader" and m.state == "running"]
    return leaders[0] if len(leaders) == 1 and leaders[0].name != old else None


@dataclasses.dataclass(frozen=True)
class Trial:
    """The verdicts of one drill and the record written for it."""

    drill: Drill
    budget_s: float
    sets: checkers.SetVerdict
    writer: checkers.WriterVerdict
    gap: checkers.GapVerdict
    members: list[patroni.Member]
    record: dict


def run(stack: Stack, drill: Drill) -> Trial:
    """Run ``drill`` once against the current leader, under load; record it and return the verdicts."""
    budget = drill.budget(stack.budgets)
    converged(stack)
    ports = stack.spec.ports
    stack.sql(ports.haproxy_primary, SCHEMA)
    run_dir = stack.reports / "drills" / f"{drill.name}-{int(time.time())}"
    old = stack.leader()
    with runner.running(stack.target.vantage(), stack.dsn(ports.haproxy_primary), stack.dsn(ports.haproxy_replicas),
                        run_dir) as workload:
        workload.wait_for_writes(FLOWING_WRITES)
        fault_at = time.time()
        with drill.fault(stack, old.name):
            wait_until(f"a leader other than {old.name}", lambda: leader_other_than(stack, old.name),
                       timeout=budget + 10)
            workload.wait_for_writes(FLOWING_WRITES, timeout=budget + 10)
        heal_at = time.time()
        members = converged(stack, rejoined=old.name)
        workload.wait_for_writes(FLOWING_WRITES)
    history = workload.history()
    final = {row[0] for row in stack.sql(ports.haproxy_primary, keys_of_run_query(run_dir.name))}
    sets = checkers.check_set(history, final)
    writer = checkers.check_single_writer(history)
    gap = checkers.check_write_gap(history, fault_at, heal_at, budget_s=budget)
    new = next(m.name for m in members if m.role == "leader")
    plot = report.plot_timeline(history, fault_at, heal_at, gap, run_dir / "timeline.png",
                                f"{drill.name}: {old.name} -> {new}, write gap {gap.gap_s:.1f} s (budget {budget:g} s)")
    record = {"drill": drill.name, "expect": drill.expect, "old_leader": old.name, "new_leader": new,
              "budget_s": budget, "write_gap_s": round(gap.gap_s, 2), "within_budget": gap.gap_s <= budget,
              "set": sets.summary, "single_writer": writer.summary, "history": str(run_dir / "history"),
              "timeline_plot": str(plot)}
    report.append_record(stack.reports / "drills.json", record, key="drill")
    return Trial(drill, budget, sets, writer, gap, members, record)
