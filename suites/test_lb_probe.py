"""The load balancer's probe is tied to service: a node whose HAProxy has no primary to route to
answers the probe as unhealthy (``monitor fail`` on the primary listener's server count), so the
load balancer takes it out of rotation while the other members stay in, and puts it back once the
node routes again, as the load balancer reports its pool. A fault (one node's route to the leader
taken away, healed in ``finally``), so ``chaos``: while it is on, that member refuses 5000. And
with every member probed down, new connections go where ``load_balancer.no_healthy_backends``
says (Azure's ``noHealthyBackendsBehavior``)."""

from __future__ import annotations

import contextlib

import pytest

from deployer.budgets import CLIENT_RECONNECT_S
from deployer.drills.nemesis import frontend_disabled, server_in_maintenance
from deployer.targets import TargetError
from deployer.wait import wait_until

pytestmark = pytest.mark.chaos


def test_a_member_without_a_primary_to_route_to_leaves_the_pool_until_it_routes_again(stack):
    leader = stack.leader().name
    node = next(n.name for n in stack.spec.nodes if n.name != leader)
    expected = {n.name: n.name != node for n in stack.spec.nodes}

    with server_in_maintenance("primary", leader)(stack, node):
        wait_until(f"the load balancer to report {node} unhealthy (its HAProxy has no primary to route to) "
                   "and every other member healthy", stack.pool_health, lambda seen: seen == expected,
                   timeout=stack.budgets.lb_settle_s)
    stack.target.wait_pool_healthy()


def test_with_every_member_probed_down_new_connections_go_where_the_spec_says(stack):
    """Every node's health endpoint switched off (its HAProxy's ``health`` frontend disabled; routing
    untouched) until the load balancer reports every member down. ``no_healthy_backends:
    AllProbedUp``: a query through 5000 still reaches the leader (new connections go to every
    member, so writes resume as soon as a node HAProxy routes, not at the next probe);
    ``AllProbedDown``: none gets through."""
    behaviour, port = stack.spec.load_balancer.no_healthy_backends, stack.spec.ports.haproxy_primary
    with contextlib.ExitStack() as faults:
        for node in stack.spec.nodes:
            faults.enter_context(frontend_disabled("health")(stack, node.name))
        wait_until("the load balancer to report every member unhealthy (every health endpoint off)",
                   stack.pool_health, lambda seen: not any(seen.values()), timeout=stack.budgets.lb_settle_s)
        query = "SELECT pg_is_in_recovery()::text"
        if behaviour == "AllProbedUp":
            wait_until(f"a query through {port} to reach the leader with every member probed down "
                       "(no_healthy_backends: AllProbedUp sends new connections to every member)",
                       lambda: stack.sql(port, query), lambda rows: rows == [["false"]], timeout=3 * CLIENT_RECONNECT_S)
        else:
            with pytest.raises(TargetError):
                stack.sql(port, query)
    stack.target.wait_pool_healthy()
