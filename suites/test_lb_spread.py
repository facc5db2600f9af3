"""The load balancer spreads new connections over its members, as its own counters report them."""

from __future__ import annotations

import pytest

from deployer.targets.contract import check_spread

pytestmark = [pytest.mark.acceptance, pytest.mark.needs("lb_counters")]

#: New client connections opened through the frontend, half on each client port.
CONNECTIONS = 12


def test_connections_through_the_frontend_are_spread_over_more_than_one_member(stack):
    ports = stack.spec.ports
    before = stack.target.lb_connections()
    for i in range(CONNECTIONS):
        stack.sql(ports.haproxy_replicas if i % 2 else ports.haproxy_primary, "SELECT 1")
    check_spread(before, stack.target.lb_connections())
