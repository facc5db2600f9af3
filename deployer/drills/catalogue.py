"""Every drill as data (Jepsen's generator, flattened): the fault, whom it hits, what the drill
waits for while it is on, the capability it needs, its budget from the spec and the behaviour it
expects, in one sentence.

Adding a drill is adding one entry here (and, if the platform must do something new, one target
primitive): ``suites/test_drills.py`` iterates this catalogue, so the new drill runs under load
with every checker, and ``make bench-failover`` can repeat it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

from deployer.budgets import Budgets
from deployer.drills import changes, holds, nemesis
from deployer.targets.base import Capability


@dataclasses.dataclass(frozen=True)
class Drill:
    """One drill. ``victim``: the fault hits the leader or a replica (the synchronous standby when
    there is one). ``hold``: what must be seen before the heal (``holds``). ``leader_change``: the
    leader after the drill differs from the one before (True), is the same one on the same timeline
    (False). ``budget``: the write gap the spec allows, measured from the fault, or with
    ``budget_from="heal"`` the time from the heal to the first acknowledged write (the fault stops
    writes by design). ``keeps_postmaster``: PostgreSQL on the victim is never restarted.
    ``direct``: writers inside the network write to every node directly (the zombie path).
    ``planned``: the cluster hands over on request (no lease has to expire)."""

    name: str
    fault: nemesis.Fault
    budget: Callable[[Budgets], float]
    expect: str
    hold: holds.Hold = holds.new_leader
    victim: Literal["leader", "replica"] = "leader"
    leader_change: bool | None = True
    budget_from: Literal["fault", "heal"] = "fault"
    keeps_postmaster: bool = False
    direct: bool = True
    needs: Capability | None = None
    planned: bool = False


CATALOGUE: tuple[Drill, ...] = (
    Drill("switchover", nemesis.switchover, lambda b: b.switchover_s, planned=True,
          expect="Patroni demotes the leader and promotes the healthiest replica within one loop; "
                 "no acknowledged write is lost."),
    Drill("kill-postmaster", nemesis.killed_postmaster, lambda b: b.postmaster_restart_s, hold=holds.writes_flow,
          leader_change=False,
          expect="Patroni restarts PostgreSQL in place within one loop: no leader change, one timeline."),
    Drill("kill-patroni", nemesis.signalled_patroni("KILL"), lambda b: b.patroni_restart_s, hold=holds.writes_flow,
          leader_change=False, keeps_postmaster=True,
          expect="systemd restarts Patroni before its leader key expires: the key stays with the leader, "
                 "PostgreSQL is never restarted, writes pause only while HAProxy's checks of the REST API fail."),
    Drill("freeze-patroni", nemesis.signalled_patroni("STOP", then="CONT"), lambda b: b.crash_failover_s,
          expect="The frozen leader's key expires after ttl and a replica is promoted; the load balancer "
                 "never routes to the frozen primary, which may still acknowledge direct writes until "
                 "SIGCONT (without a watchdog), then rejoins as a replica."),
    Drill("crash-primary-vm", nemesis.crashed_vm, lambda b: b.crash_failover_s, needs="crash_vm",
          expect="The leader key expires after ttl, a replica is promoted and the load balancer follows; "
                 "the crashed node comes back as a streaming replica on one timeline."),
    Drill("isolate-primary", nemesis.isolated, lambda b: b.crash_failover_s, needs="isolate",
          expect="The isolated leader cannot renew its key and demotes itself, a replica is promoted "
                 "within the crash budget; after heal the old leader rejoins as a replica (pg_rewind)."),
    Drill("isolate-replica", nemesis.isolated, lambda b: b.member_loss_s, hold=holds.another_sync_standby,
          victim="replica", leader_change=False, needs="isolate",
          expect="Writes continue on the leader; in synchronous mode Patroni names another synchronous "
                 "standby; the replica streams again after heal."),
    Drill("stop-etcd-member", nemesis.stopped_service("etcd"), lambda b: b.member_loss_s, hold=holds.writes_flow,
          leader_change=False,
          expect="etcd keeps its quorum without the leader's own member; Patroni talks to the others: "
                 "no effect on writes, no leader change."),
    Drill("etcd-quorum-loss", nemesis.stopped_on_majority("etcd"), lambda b: b.quorum_recovery_s,
          hold=holds.quorum_lost, leader_change=None, budget_from="heal",
          expect="Without failsafe_mode the leader turns read-only within retry_timeout and a loop, and the "
                 "load balancer takes every member out; with it the leader stays primary. Once etcd has its "
                 "quorum back, writes resume within a lease."),
    Drill("cluster-restart", nemesis.crashed_cluster, lambda b: b.cluster_restart_s, hold=holds.nothing,
          leader_change=None, budget_from="heal", direct=False, needs="crash_vm",
          expect="Every VM crashed and started again: a leader is elected once they boot, writes resume "
                 "within a boot and a lease, and no acknowledged write is lost."),
    # Backups (long drills: make drill): the archive follows a new leader, a replica comes back from the
    # repository, a backup caught by a switchover ends clearly and the next one succeeds.
    Drill("backup-archive-after-switchover", nemesis.switchover, lambda b: b.switchover_s, planned=True, direct=False,
          hold=holds.archives_the_new_timeline,
          expect="After a planned switchover the new leader archives WAL of its new timeline within archive_timeout "
                 "plus the push's margin, and a differential backup on it succeeds (no new full one forced)."),
    Drill("backup-archive-after-crash", nemesis.crashed_vm, lambda b: b.crash_failover_s, needs="crash_vm",
          direct=False, hold=holds.archives_the_new_timeline,
          expect="After the leader's VM crashed, the promoted replica archives WAL of its new timeline within "
                 "archive_timeout plus the push's margin, and a differential backup on it succeeds."),
    Drill("backup-replica-rebuilt", nemesis.data_directory_lost, lambda b: b.member_loss_s, victim="replica",
          leader_change=False, direct=False, hold=holds.rebuilt_from_repository,
          expect="A replica's data directory deleted: Patroni re-creates it from the repository (pgBackRest "
                 "restore, its first replica method), not from the leader; writes never pause."),
    Drill("backup-during-switchover", nemesis.backup_then_switchover, lambda b: b.switchover_s, planned=True,
          direct=False, hold=holds.backup_outcome_clear,
          expect="A full backup running on the leader when it is switched over ends, done or failed with "
                 "pgBackRest's error, never hanging; the next backup, on the new leader, succeeds."),
    # Day two: a change applied by `deployer up` under load, reverted by `up` with the stack's own spec.
    *(Drill(f"change-{c.name}", c.fault, lambda b: b.switchover_s, hold=c.hold, planned=True, direct=False,
            leader_change=None if c.impact == "rolling restart" else False,
            keeps_postmaster=c.impact != "rolling restart",
            expect=f"`deployer up` applies a {c.impact} change ({c.name}) node by node: every node runs it, no "
                   "member pending a restart, the same system identifier, "
                   + ("one planned switchover" if c.impact == "rolling restart" else "no leader change and the "
                      "leader's PostgreSQL never restarted") + ", no acknowledged write lost, the write gap "
                   "within the switchover budget; `up` with the own spec reverts it the same way.")
      for c in changes.CHANGES),
    # Day two: `deployer rotate-certs` under load; a rotation is not undone.
    Drill("change-rotate-certs", changes.ROTATE_CERTS.fault, lambda b: b.switchover_s, hold=changes.ROTATE_CERTS.hold,
          planned=True, direct=False, leader_change=False, keeps_postmaster=True,
          expect="`deployer rotate-certs` replaces the CA and every node's certificate node by node (reloads and one "
                 "etcd member restarted at a time, no switchover), the old CA trusted until every node serves the "
                 "new one: then every node serves a certificate of the new CA on 5432, 8008 and 2379, no member "
                 "pending a restart, the same system identifier and leader, the leader's PostgreSQL never "
                 "restarted, no acknowledged write lost, the write gap within the switchover budget."),
)
