"""The load balancer's probe is tied to service: a node whose HAProxy has no primary to route to
answers the probe as unhealthy (``monitor fail`` on the primary listener's server count), so the
load balancer takes it out of rotation while the other members stay in, and puts it back once the
node routes again, as the load balancer reports its pool. A fault (one node's route to the leader
taken away, healed in ``finally``), so ``chaos``: while it is on, that member refuses 5000."""

from __future__ import annotations

import pytest

from deployer.drills.nemesis import server_in_maintenance
from deployer.wait import wait_until

pytestmark = pytest.mark.chaos


def test_a_member_without_a_primary_to_route_to_leaves_the_pool_until_it_routes_again(stack):
    leader = stack.leader().name
    node = next(n.name for n in stack.spec.nodes if n.name != leader)
    expected = {n.name: n.name != node for n in stack.spec.nodes}

    def pool():
        return {m.node: m.healthy for m in stack.target.backend_pool()}

    with server_in_maintenance("primary", leader)(stack, node):
        wait_until(f"the load balancer to report {node} unhealthy (its HAProxy has no primary to route to) "
                   "and every other member healthy", pool, lambda seen: seen == expected,
                   timeout=stack.budgets.lb_settle_s)
    stack.target.wait_pool_healthy()
