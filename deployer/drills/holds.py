"""What a drill waits for while its fault is on, before it heals: each hold is
``hold(stack, workload, leader, victim, budget_s)`` and returns once the behaviour the catalogue
expects was seen, or raises ``WaitTimeout`` naming what was expected, what was seen and how long
was waited. ``leader`` is the leader before the fault, ``victim`` the node the fault hit.
"""

from __future__ import annotations

from collections.abc import Callable

from deployer import backups, patroni
from deployer.stack import Stack
from deployer.wait import wait_until
from load.runner import Workload

#: Acknowledged writes that show the workload flows (before the fault, during it, after the heal).
FLOWING_WRITES = 20
#: Slack on top of a budget before a hold gives up (the drill's verdict then names the budget).
SLACK_S = 10

Hold = Callable[[Stack, Workload, str, str, float], None]


def leader_other_than(stack: Stack, old: str) -> patroni.Member | None:
    """The one running leader if it is not ``old``, else None."""
    leaders = [m for m in stack.cluster() if m.role == "leader" and m.state == "running"]
    return leaders[0] if len(leaders) == 1 and leaders[0].name != old else None


def new_leader(stack: Stack, workload: Workload, leader: str, victim: str, budget_s: float) -> None:
    """A leader other than ``leader`` runs and writes flow through the frontend again."""
    wait_until(f"a leader other than {leader}", lambda: leader_other_than(stack, leader), timeout=budget_s + SLACK_S)
    workload.wait_for_writes(FLOWING_WRITES, timeout=budget_s + SLACK_S)


def writes_flow(stack: Stack, workload: Workload, leader: str, victim: str, budget_s: float) -> None:
    """Writes keep flowing (or flow again) through the frontend, for one Patroni loop at least, so a
    leader change the fault would cause has had its chance."""
    workload.wait_for_writes(FLOWING_WRITES, timeout=budget_s + SLACK_S)
    workload.wait_for_writes(int(stack.spec.workload.writes_per_s * stack.spec.patroni.loop_wait),
                             timeout=budget_s + SLACK_S + stack.spec.patroni.loop_wait)


def another_sync_standby(stack: Stack, workload: Workload, leader: str, victim: str, budget_s: float) -> None:
    """Writes flow; with synchronous mode, Patroni has named a synchronous standby other than ``victim``."""
    writes_flow(stack, workload, leader, victim, budget_s)
    if stack.spec.patroni.synchronous_mode:
        wait_until(f"a synchronous standby other than {victim}", stack.cluster,
                   lambda ms: any(m.sync and m.name != victim for m in ms), timeout=budget_s + SLACK_S)


def quorum_lost(stack: Stack, workload: Workload, leader: str, victim: str, budget_s: float) -> None:
    """Without failsafe mode the leader turns read-only within ``budget_s`` (its own REST API says
    so), and the load balancer takes every member out (no HAProxy has a primary to route to); with
    failsafe mode it stays primary and writes flow for a whole ``retry_timeout`` and loop beyond."""
    if stack.spec.patroni.failsafe_mode:
        writes_flow(stack, workload, leader, victim, stack.budgets.demote_s)
        role = patroni.get(stack.target, leader, "/patroni")["role"]
        assert role in ("primary", "master"), f"failsafe mode is on, yet {leader} reports role {role!r}"
        return
    wait_until(f"{leader} read-only (demoted) within {budget_s:g} s", lambda: patroni.get(stack.target, leader, "/patroni"),
               lambda p: p.get("role") not in ("primary", "master"), timeout=budget_s)
    wait_until("every load-balancer member unhealthy (no primary to route to)", stack.target.backend_pool,
               lambda pool: not any(m.healthy for m in pool), timeout=stack.budgets.lb_settle_s)


def nothing(stack: Stack, workload: Workload, leader: str, victim: str, budget_s: float) -> None:
    """Heal at once (the fault is the event, e.g. every VM crashed: the heal starts them)."""


def _timeline_archived(stack: Stack, leader: str) -> str:
    """The leader's last archived WAL file if it is a segment of the leader's own timeline, else ""."""
    timeline = stack.psql(leader, "SELECT timeline_id FROM pg_control_checkpoint()")[0][0]
    wal = backups.read_archiver(stack, leader).last_archived_wal
    return wal if len(wal) == 24 and int(wal[:8], 16) >= int(timeline) else ""


def archives_the_new_timeline(stack: Stack, workload: Workload, leader: str, victim: str, budget_s: float) -> None:
    """A new leader (``new_leader``) archives a WAL segment of its own timeline within
    ``backup.archive_max_age_s`` of taking over (pgBackRest #584: archiving broken after a failover),
    and a differential backup on it succeeds: no new full backup is forced by the new timeline."""
    new_leader(stack, workload, leader, victim, budget_s)
    now = leader_other_than(stack, leader)
    wait_until(f"{now.name} to archive a WAL segment of its own timeline (pg_stat_archiver)",
               lambda: _timeline_archived(stack, now.name), timeout=stack.spec.backup.archive_max_age_s, interval=2)
    backups.take(stack, "diff")


def rebuilt_from_repository(stack: Stack, workload: Workload, leader: str, victim: str, budget_s: float) -> None:
    """Writes flow, and the replica whose data directory was deleted streams again, re-created by
    Patroni's first replica method, pgBackRest's restore from the repository (its log says so), not
    by a base backup from the leader."""
    writes_flow(stack, workload, leader, victim, budget_s)
    wait_until(f"{victim} streaming again", stack.cluster,
               lambda ms: any(m.name == victim and m.state == "streaming" for m in ms), timeout=REBUILD_S)
    log = stack.ssh(victim, ["sudo", "journalctl", "-u", "patroni", "--since", "-10min", "--no-pager", "-o", "cat"]).stdout
    created = [line for line in log.splitlines() if "replica has been created using" in line]
    assert created and "pgbackrest" in created[-1], (
        f"{victim} was re-created, but not from the repository: Patroni logged {created or 'no replica creation'}")


#: How long re-creating a replica from the repository may take here (restore, then WAL replay).
REBUILD_S = 300


def backup_outcome_clear(stack: Stack, workload: Workload, leader: str, victim: str, budget_s: float) -> None:
    """A new leader (``new_leader``); the full backup the switchover interrupted ended, either done or
    failed with pgBackRest's own error (``ERROR: [code]``), never hanging; then a backup on the new
    leader succeeds (``nemesis.backup_then_switchover``)."""
    from deployer.drills.nemesis import BACKUP_OUTCOME

    new_leader(stack, workload, leader, victim, budget_s)
    outcome = wait_until("the interrupted backup to end", lambda: BACKUP_OUTCOME.get("result"), timeout=REBUILD_S)
    assert not outcome.startswith("failed") or "ERROR: [" in outcome, (
        f"the backup interrupted by the switchover failed without pgBackRest's error message: {outcome[-500:]}")
    backups.take(stack, "diff")
