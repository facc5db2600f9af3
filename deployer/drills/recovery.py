"""The recovery drills (``make drill``): a restore from the repository under the drills' load, judged
against the workload's history like a failover, recorded in ``drills.json`` with the history and a
timeline plot.

- ``latest`` (*the whole cluster lost*): while writes run, Patroni and PostgreSQL are killed on every
  node and every data directory deleted; ``deployer restore --latest`` brings the cluster back.
  ``checkers.check_restore_latest``: the acknowledged writes missing are a tail, never a hole, and
  reach back no further than ``backup.rpo_s`` (the measured RPO); the RTO, the loss to the first
  write acknowledged after it, within ``backup.rto_s``.
- ``time`` (*a point in time*): a target time during steady load, more writes after it, then
  ``deployer restore --to TARGET --into <stack>-pitr``: a new stack beside this one, which keeps
  serving the load meanwhile. ``checkers.check_point_in_time`` on the new stack's rows: every write
  acknowledged before the target is there, none started after it; the restore's duration (deploying
  the new stack, then restoring into it) recorded, the restore's within ``backup.rto_s``. The new
  stack is torn down after.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Literal

from deployer.drills import checkers, report
from deployer.drills.holds import FLOWING_WRITES
from deployer.drills.trial import USERS, converged
from deployer import stages
from deployer.restore import restore
from deployer.restore_into import restore_into
from deployer.stack import Stack
from load import runner
from load.history import SCHEMA, keys_of_run_query

Mode = Literal["latest", "time"]
#: Writes after a point-in-time target, so the restore has something to leave out.
AFTER_TARGET_S = 10
#: Seconds within which a write counts as in flight at the target: the commit time PostgreSQL stops
#: at and the workload's clock are one clock here (the VMs share the host's), but a commit is
#: acknowledged only after it was written.
SLACK_S = 0.5


def into_name(source: str) -> str:
    """The stack the point-in-time drill restores into (the local target's names have 10 characters at most)."""
    return f"{source[:5]}-pitr"


@dataclasses.dataclass(frozen=True)
class Recovery:
    """One recovery drill's outcome: the broken promises (``failures``) and its record."""

    failures: list[str]
    record: dict


def _kill_and_wipe(stack: Stack) -> None:
    """Every node at once: Patroni and PostgreSQL killed (SIGKILL, no shutdown checkpoint, no last
    archive attempt), then the data directory deleted."""
    from concurrent.futures import ThreadPoolExecutor

    from deployer.inventory import data_dir

    command = f"sudo systemctl kill -s KILL patroni; sudo find {data_dir(stack.spec)} -mindepth 1 -delete"
    with ThreadPoolExecutor(len(stack.spec.nodes)) as pool:
        list(pool.map(lambda n: stack.ssh(n.name, command, timeout=120), stack.spec.nodes))


def run(stack: Stack, mode: Mode) -> Recovery:
    """The drill ``restore-latest`` or ``restore-point-in-time`` (see the module docstring)."""
    spec, ports = stack.spec, stack.spec.ports
    name = "restore-latest" if mode == "latest" else "restore-point-in-time"
    converged(stack)
    stack.sql(ports.haproxy_primary, SCHEMA)
    run_dir = stack.reports / "drills" / f"{name}-{int(time.time())}"
    load, into = spec.workload, None
    try:
        with runner.running(stack.target.vantage(), stack.dsn(ports.haproxy_primary),
                            stack.dsn(ports.haproxy_replicas), run_dir, users=USERS, writes_per_s=load.writes_per_s,
                            workers=load.workers, duration_s=load.steady_s + 1800, state=stack.state) as workload:
            workload.wait_steady(load.steady_s)
            target = time.time()
            if mode == "time":
                workload.wait_steady(load.steady_s + AFTER_TARGET_S)
            fault_at = time.time()
            if mode == "latest":
                _kill_and_wipe(stack)
                seconds = restore(stack, None, progress=lambda msg: None)
            else:
                into = restore_into(stack, into_name(stack.state.name),
                                    dt.datetime.fromtimestamp(target, dt.timezone.utc), progress=lambda msg: None)
                seconds = into.seconds
            heal_at = time.time()
            workload.wait_for_writes(FLOWING_WRITES, timeout=120)
        history = workload.history()
        final = {row[0] for row in (into.stack if into else stack).sql(ports.haproxy_primary,
                                                                       keys_of_run_query(run_dir.name))}
    finally:
        if into is not None:
            stages.down(into.stack.state, into.stack.target)
    gap = checkers.check_write_gap(history, fault_at, heal_at)
    if mode == "latest":
        verdict = checkers.check_restore_latest(history, final, fault_at, spec.backup.rpo_s)
        numbers = {"rpo_s": spec.backup.rpo_s, "rpo_measured_s": round(verdict.rpo_measured_s, 2),
                   "lost": len(verdict.lost), "holes": len(verdict.holes)}
    else:
        before = [op for op in history if op.start < fault_at]
        attempted = {op.key for op in before}
        verdict = checkers.check_point_in_time(before, target, final & attempted, slack_s=SLACK_S)
        numbers = {"target": dt.datetime.fromtimestamp(target, dt.timezone.utc).isoformat(),
                   "missing_before": len(verdict.missing_before), "present_after": len(verdict.present_after),
                   "in_flight_present": len(verdict.in_flight_present), "in_flight_absent": len(verdict.in_flight_absent)}
    # RTO: the loss to the first write after it; a point-in-time restore's, its restore (the new
    # stack's deployment, which needs no data, is recorded beside it).
    rto = gap.gap_s if mode == "latest" else seconds["total"] - seconds["deploy"]
    failures = ([] if verdict.valid else [verdict.summary]) + (
        [f"{'writes resumed' if mode == 'latest' else 'the restore took'} {rto:.1f} s after the "
         f"{'loss' if mode == 'latest' else 'new stack was up'}, over backup.rto_s ({spec.backup.rto_s} s)"]
        if rto > spec.backup.rto_s else [])
    if mode == "time":
        numbers |= {"into": into.stack.state.name, "source_write_gap_s": round(gap.gap_s, 2),
                    "deploy_s": seconds["deploy"]}
    plot = report.plot_timeline(history, fault_at, heal_at, gap, run_dir / "timeline.png",
                                f"{name} ({spec.profile}): restore {seconds['total']:.0f} s, "
                                + (f"writes back after {rto:.0f} s" if mode == "latest" else
                                   f"into {into.stack.state.name} (this stack's writes meanwhile)"),
                                marks={"restored": heal_at})
    record = {"drill": name, "fault": name, "profile": spec.profile, "expect": __doc__.split("- ")[1 if mode == "latest"
                                                                                                  else 2].strip(),
              **numbers, "rto_s": round(rto, 2), "restore_s": seconds, "ops": len(history),
              # the fields every drill record has (the report's table, the trend across runs)
              "victim": "every node" if mode == "latest" else "none (restored beside it)",
              "write_gap_s": round(gap.gap_s, 2), "gap_slowest": "", "measured_s": round(rto, 2),
              "budget_s": spec.backup.rto_s, "budget_from": "fault", "within_budget": rto <= spec.backup.rto_s,
              "lost": numbers.get("lost", numbers.get("missing_before", 0)), "zombie_primary_s": 0.0,
              "summary": verdict.summary, "verdict": "pass" if not failures else "; ".join(failures),
              "history": str(run_dir / "history"), "timeline_plot": str(plot)}
    report.append_record(stack.reports / "drills.json", record, key="drill")
    return Recovery(failures, record)
