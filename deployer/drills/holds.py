"""What a drill waits for while its fault is on, before it heals: each hold is
``hold(stack, workload, leader, victim, budget_s)`` and returns once the behaviour the catalogue
expects was seen, or raises ``WaitTimeout`` naming what was expected, what was seen and how long
was waited. ``leader`` is the leader before the fault, ``victim`` the node the fault hit.
"""

from __future__ import annotations

from collections.abc import Callable

from deployer import patroni
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
