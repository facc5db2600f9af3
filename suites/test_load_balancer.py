"""The load balancer follows its probe: a member whose HAProxy stops leaves, and comes back."""

from __future__ import annotations

import pytest

from deployer.drills.nemesis import stopped_service
from deployer.wait import wait_until


@pytest.mark.chaos
def test_a_member_whose_haproxy_stops_is_marked_down_then_up_again(stack):
    node = stack.spec.nodes[-1].name
    others = {n.name: True for n in stack.spec.nodes if n.name != node}
    lb = stack.spec.load_balancer
    budget = stack.budgets.lb_settle_s
    stack.target.wait_pool_healthy()
    with stopped_service("haproxy")(stack, node):
        wait_until(f"{node} unhealthy in the load balancer within {budget:g} s (probe interval "
                   f"{lb.probe_interval_s} s x threshold {lb.probe_threshold})", stack.pool_health,
                   lambda h: h.get(node) is False and {k: v for k, v in h.items() if k != node} == others,
                   timeout=budget)
    wait_until(f"{node} healthy again after HAProxy restarted", stack.pool_health,
               lambda h: h.get(node) is True, timeout=budget)
