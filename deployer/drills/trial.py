"""One drill, run: a healthy cluster, steady Locust load through the frontend with the observers
watching (``observer``), the catalogue's fault on its victim, held until the expected behaviour is
seen, healed, the cluster converged again, and every checker's verdict on the history.

``failures`` holds each broken promise as a sentence, by the policy the spec sets: lost
acknowledged writes and a zombie primary fail a drill only where the spec promises none
(synchronous mode); otherwise they are reported as the known risk they are. The sequential clients'
gaps (``sequential_record``) are recorded, never judged. The suites assert on
``failures``; this module measures and records (``drills.json``, the history, Locust's reports and
a timeline plot under ``reports/<stack>/drills/<drill>-<time>/``). A drill stopped by Ctrl-C (or
SIGTERM, SIGHUP) heals, stops its helpers and is recorded as interrupted (``run``).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time

from deployer import journal, patroni
from deployer.drills import checkers, holds, observer, report
from deployer.drills.catalogue import Drill
from deployer.stack import Stack
from deployer.wait import wait_until
from load import runner
from load.history import SCHEMA, SEQUENTIAL_CLIENTS, Op, keys_of_run_query

log = logging.getLogger("deployer.trial")

#: Locust writers (the sequential clients come on top).
USERS = 4


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


def _victim(drill: Drill, members: list[patroni.Member]) -> str:
    if drill.victim == "leader":
        return next(m.name for m in members if m.role == "leader")
    replicas = sorted((m for m in members if m.role == "replica"), key=lambda m: not m.sync)
    return replicas[0].name


def _promoted_at(stack: Stack, leader: str, after: float) -> float | None:
    """When the newest timeline began, from Patroni's ``/history`` (if after ``after``)."""
    entries = patroni.get(stack.target, leader, "/history")
    if not entries:
        return None
    at = datetime.datetime.fromisoformat(entries[-1][3]).timestamp()
    return at if at >= after else None


def _postmaster_started(stack: Stack, node: str) -> str:
    return stack.psql(node, "SELECT pg_postmaster_start_time()")[0][0]


def _first_ok(history: list[Op], after: float) -> float | None:
    return min((op.end for op in history if op.kind == "write" and op.outcome == "ok" and op.client in checkers.FRONTEND
                and op.end > after), default=None)


def sequential_record(history: list[Op], fault_at: float) -> dict[str, float | str]:
    """Each sequential client's gap around the fault at ``fault_at`` (``check_sequential_gap``, its own
    writes only), for the record: ``<key>_gap_s`` (seconds, 2 decimals) and ``<key>`` (the summary:
    where its time went), ``<key>`` the client's name with ``_`` for ``-``: ``sequential_gap_s``,
    ``sequential``, ``sequential_short_timeout_gap_s``, ``sequential_short_timeout``. Recorded, never
    judged: what one user of the application sees depends on its own timeouts, not on a promise of
    the spec; a client that never wrote again after the fault says so in its summary ("until the
    end") and its gap runs to the end of the history."""
    record: dict[str, float | str] = {}
    for client in SEQUENTIAL_CLIENTS:
        verdict, key = checkers.check_sequential_gap(history, fault_at, client=client), client.replace("-", "_")
        record |= {f"{key}_gap_s": round(verdict.gap_s, 2), key: verdict.summary}
    return record


@dataclasses.dataclass(frozen=True)
class Verdicts:
    """The checkers' verdicts a drill is judged on."""

    sets: checkers.SetVerdict
    writer: checkers.WriterVerdict
    zombie: checkers.ZombieVerdict
    stale: checkers.StaleVerdict
    gap: checkers.GapVerdict
    parts: checkers.GapParts
    convergence: checkers.ConvergeVerdict


def judge(drill: Drill, v: Verdicts, *, measured: float, measured_what: str, budget: float, sync: bool,
          guarded: bool, old: patroni.Member, new: patroni.Member,
          postmaster: tuple[str, str] | None = None) -> list[str]:
    """Every promise the drill broke, as a sentence (empty: it passed). Always: the budget, one
    writable primary through the load balancer, convergence, no unexpected or failed-but-present
    row, the leader change the drill expects (``True``: another leader; ``False``: the same one on
    the same timeline) and, given ``postmaster`` (start time before, after), PostgreSQL never
    restarted. Only where the spec promises it (``sync``: synchronous mode; ``guarded``: a watchdog
    in required mode): no lost acknowledged write, no zombie window, no read staler than allowed."""
    failures = [] if measured <= budget else [
        f"{measured_what} {measured:.1f} s exceeds the budget {budget:g} s ({v.gap.summary} {v.parts.summary})"]
    failures += [x.summary for x in (v.writer, v.convergence) if not x.valid]
    if v.sets.unexpected or v.sets.failed_present or (sync and (v.sets.lost or v.sets.lost_direct)):
        failures.append(v.sets.summary)
    if (sync or guarded) and not v.zombie.valid:
        failures.append(v.zombie.summary + (" (the watchdog must end a frozen primary before its key expires)"
                                            if guarded else ""))
    if sync and not v.stale.valid:
        failures.append(v.stale.summary)
    if drill.leader_change is True and new.name == old.name:
        failures.append(f"expected a new leader, {old.name} leads again")
    if drill.leader_change is False and (new.name != old.name or new.timeline != old.timeline):
        failures.append(f"expected {old.name} to lead on timeline {old.timeline} throughout; "
                        f"now {new.name} on timeline {new.timeline}")
    if postmaster is not None and postmaster[0] != postmaster[1]:
        failures.append(f"PostgreSQL on {old.name} was restarted (postmaster start {postmaster[0]} -> {postmaster[1]})")
    return failures


@dataclasses.dataclass(frozen=True)
class Trial:
    """The verdicts of one drill, the broken promises (``failures``) and the record written for it."""

    drill: Drill
    budget_s: float
    measured_s: float
    failures: list[str]
    record: dict


def interrupted_record(drill: Drill, profile: str, progress: dict, why: str, left: list[str]) -> dict:
    """The ``drills.json`` record of a drill a signal stopped: ``verdict`` "interrupted", what
    stopped it (``interrupted``), the phase it was in, the victim and run directory when known, and
    what its run left in the fault journal (``left_in_journal``: empty when every fault was healed
    and every helper process ended)."""
    return {"drill": drill.name, "fault": drill.name, "profile": profile, "verdict": "interrupted",
            "interrupted": why, "phase": progress["phase"], "victim": progress.get("victim"),
            "run_dir": progress.get("run_dir"), "healed": not left, "left_in_journal": left,
            "at": round(time.time(), 3)}


def run(stack: Stack, drill: Drill, budget_scale: float = 1.0) -> Trial:
    """Run ``drill`` once under load, record it and return the verdicts. ``budget_scale`` shrinks or
    widens the budget (a rehearsal of a tighter objective: below what the fault reaches, it fails).

    SIGINT, SIGTERM and SIGHUP stop it within seconds (``journal.interruptible``, whatever signal
    disposition this process inherited): the fault is healed, Locust, the observers and the direct
    writers are stopped, the drill is recorded as interrupted (``interrupted_record``) and the
    ``KeyboardInterrupt`` propagates (pytest ends the session)."""
    progress: dict = {"phase": "checking the cluster before the load"}
    try:
        with journal.interruptible():
            return _run(stack, drill, budget_scale, progress)
    except KeyboardInterrupt as exc:
        left = [e["what"] for e in journal.entries(stack.state) if e["owner"]["pid"] == journal.me()["pid"]]
        record = interrupted_record(drill, stack.spec.profile, progress, str(exc) or type(exc).__name__, left)
        report.append_record(stack.reports / "drills.json", record, key="drill")
        log.warning("Drill %s interrupted (%s) while %s; %s.", drill.name, record["interrupted"], progress["phase"],
                    "healed, helpers stopped" if not left else f"left in the fault journal: {'; '.join(left)}")
        raise


def _run(stack: Stack, drill: Drill, budget_scale: float, progress: dict) -> Trial:
    spec, ports = stack.spec, stack.spec.ports
    budget = drill.budget(stack.budgets) * budget_scale
    before = converged(stack)
    old = next(m for m in before if m.role == "leader")
    victim = progress["victim"] = _victim(drill, before)
    stack.sql(ports.haproxy_primary, SCHEMA)
    postmaster = _postmaster_started(stack, victim) if drill.keeps_postmaster else None
    run_dir = stack.reports / "drills" / f"{drill.name}-{int(time.time())}"
    progress["run_dir"] = str(run_dir)
    load = spec.workload
    progress["phase"] = "starting the load"
    with runner.running(stack.target.vantage(), stack.dsn(ports.haproxy_primary), stack.dsn(ports.haproxy_replicas),
                        run_dir, users=USERS, writes_per_s=load.writes_per_s, workers=load.workers,
                        duration_s=load.steady_s + 900, state=stack.state) as workload, \
            observer.observing(stack, victim, workload.history_dir, direct=drill.direct) as seen:
        progress["phase"] = "waiting for steady load"
        workload.wait_steady(load.steady_s)
        # A lost etcd leader renews every lease, so the old key outlives ttl: where the spec keeps
        # etcd's leader off Patroni's, the fault waits until it is (the daemon's turn after a heal).
        etcd_leader = (stack.etcd_leader_elsewhere()["etcd's leader"] if spec.patroni.etcd_leader_elsewhere
                       else stack.etcd_leader())
        fault_at = time.time()
        progress["phase"] = "the fault was on"
        with drill.fault(stack, victim):
            drill.hold(stack, workload, old.name, victim, budget)
        heal_at = time.time()
        progress["phase"] = "waiting for the cluster to converge after the heal"
        back_as_replica = drill.victim == "replica" or drill.leader_change is True
        members = converged(stack, rejoined=victim if back_as_replica else None)
        converged_at = time.time()
        workload.wait_for_writes(holds.FLOWING_WRITES)
    progress["phase"] = "judging the history"
    history = workload.history()
    new = next(m for m in members if m.role == "leader")
    final = {row[0] for row in stack.sql(ports.haproxy_primary, keys_of_run_query(run_dir.name))}
    promoted = _promoted_at(stack, new.name, fault_at) if new.name != old.name else None
    survivors = [n.name for n in spec.nodes if n.name != victim]
    gap = checkers.check_write_gap(history, fault_at, heal_at)
    # The gap's hops exist where a new leader took over; the write that closed the gap is the last one.
    events = {"leader_key_gone": seen.leader_key_gone(fault_at), "promoted": promoted,
              "haproxies_routed": seen.routed(promoted, survivors, new.name),
              "lb_routed": gap.gap_end if gap.first_ok_after_fault_at is not None else None} if promoted else {}

    sync = spec.patroni.synchronous_mode
    sets = checkers.check_set(history, final, require_direct=sync)
    writer = checkers.check_single_writer(history)
    zombie = checkers.check_zombie(history, promoted)
    stale = checkers.check_stale_reads(history, stack.budgets.replica_visible_s)
    parts = checkers.split_gap(fault_at, events, gap)
    convergence = checkers.check_converged(heal_at, converged_at, stack.budgets.rejoin_s)
    if drill.budget_from == "heal":
        resumed = _first_ok(history, heal_at)
        measured = float("inf") if resumed is None else resumed - heal_at
        measured_what = "writes resumed after the heal in"
    else:
        measured, measured_what = gap.gap_s, "write gap"

    guarded = "watchdog" in stack.target.capabilities and spec.patroni.watchdog_mode == "required"
    restarted = (postmaster, _postmaster_started(stack, victim)) if postmaster is not None else None
    failures = judge(drill, Verdicts(sets, writer, zombie, stale, gap, parts, convergence), measured=measured,
                     measured_what=measured_what, budget=budget, sync=sync, guarded=guarded, old=old, new=new,
                     postmaster=restarted)

    plot = report.plot_timeline(history, fault_at, heal_at, gap, run_dir / "timeline.png",
                                f"{drill.name} ({spec.profile}, {'sync' if sync else 'async'}): {old.name} -> "
                                f"{new.name}, {measured_what} {measured:.1f} s (budget {budget:g} s)",
                                marks={k: v for k, v in events.items() if v is not None},
                                leaders=[(t, holder) for t, what, holder in seen.leader_key if what == "PUT"])
    writes = [op for op in history if op.kind == "write" and op.client in checkers.FRONTEND]
    record = {
        "drill": drill.name, "fault": drill.name, "profile": spec.profile, "synchronous_mode": sync,
        "failsafe_mode": spec.patroni.failsafe_mode, "watchdog": guarded,
        "zombie_known_risk": not (sync or guarded), "expect": drill.expect, "victim": victim,
        "etcd_leader": etcd_leader, "victim_led_etcd": etcd_leader == victim,
        "old_leader": old.name, "new_leader": new.name, "budget_s": round(budget, 2),
        "budget_from": drill.budget_from, "measured_s": round(measured, 2), "within_budget": measured <= budget,
        "write_gap_s": round(gap.gap_s, 2), "gap_parts_s": parts.parts, "gap_slowest": parts.slowest,
        **sequential_record(history, fault_at),
        "ops": len(history), "ok": sum(op.outcome == "ok" for op in writes),
        "failed": sum(op.outcome == "fail" for op in writes), "unknown": sum(op.outcome == "unknown" for op in writes),
        "lost": len(sets.lost), "lost_direct": len(sets.lost_direct), "unexpected": len(sets.unexpected),
        "recovered": len(sets.recovered), "two_primaries": not writer.valid,
        "zombie_primary_s": round(zombie.zombie_primary_s, 2), "stale_reads": stale.summary,
        "converged_s": round(converged_at - heal_at, 2), "set": sets.summary, "single_writer": writer.summary,
        "zombie": zombie.summary, "verdict": "pass" if not failures else "; ".join(failures),
        "history": str(run_dir / "history"), "locust_html": str(run_dir / "locust.html"), "timeline_plot": str(plot),
    }
    report.append_record(stack.reports / "drills.json", record, key="drill")
    return Trial(drill, budget, measured, failures, record)
