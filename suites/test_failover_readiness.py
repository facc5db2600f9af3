"""If the leader died now, would Patroni fail over, and to whom? Read from what Patroni reports
(``/cluster``, ``/config``, every node's ``/patroni``) and judged by Patroni's own rules
(``deployer.failover_readiness``); every reason that rules out a member or the failover is named.
The spec sets no tag, so every replica must qualify; and where the spec asks for a watchdog, Patroni
must have armed it on the leader."""

from __future__ import annotations

import pytest

from deployer import patroni
from deployer.failover_readiness import readiness, watchdog_problems
from deployer.wait import wait_until

pytestmark = pytest.mark.acceptance

#: Lists, on a node, the command line of every process holding a watchdog device open (``/proc/*/fd``).
WATCHDOG_HOLDERS = ('for fd in /proc/[0-9]*/fd/*; do case "$(readlink "$fd")" in /dev/watchdog*) '
                    'pid=${fd#/proc/}; tr "\\0" " " < "/proc/${pid%%/*}/cmdline"; echo;; esac; done 2>/dev/null | sort -u')


def _readiness(stack):
    target = stack.target
    cluster = patroni.cluster_view(target)
    leader = next((m["name"] for m in cluster.get("members", []) if m.get("role") == "leader"), stack.spec.nodes[0].name)
    return readiness([n.name for n in stack.spec.nodes], cluster, patroni.get(target, leader, "/config"),
                     patroni.statuses(target))


@pytest.mark.smoke
def test_a_failover_would_happen_now_and_every_replica_qualifies(stack):
    """One ``/cluster``, one ``/config`` and each node's ``/patroni``: failover is not ruled out
    (paused, no leader, no replica, no synchronous standby) and no replica is ruled out (a tag or
    priority, lag past ``maximum_lag_on_failover``, not streaming, timeline, watchdog, unreachable),
    within two HA loops (``budgets.failover_ready_s``)."""
    wait_until("a failover Patroni would carry out now, every replica a candidate", lambda: _readiness(stack),
               lambda v: not v.problems, timeout=stack.budgets.failover_ready_s)


@pytest.mark.needs("watchdog")
def test_the_leaders_watchdog_is_armed_where_the_spec_asks_for_one(stack):
    """With ``patroni.watchdog_mode`` other than ``off`` on a target that gives the VMs a watchdog:
    Patroni on the leader reports no ``watchdog_failed`` and its process holds the device open (the
    kernel's ``/proc/*/fd``), so a frozen leader's VM is reset before its key expires."""
    if stack.spec.patroni.watchdog_mode == "off":
        pytest.skip("the spec runs Patroni without a watchdog (patroni.watchdog_mode: off)")
    leader = stack.leader().name
    holders = stack.ssh(leader, ["sudo", "sh", "-c", WATCHDOG_HOLDERS]).stdout.splitlines()
    problems = watchdog_problems(leader, patroni.get(stack.target, leader, "/patroni"), holders)
    assert not problems, f"watchdog_mode {stack.spec.patroni.watchdog_mode}: " + "; ".join(problems)
