"""HAProxy on every node routes 5000 to the leader only and 5001 to the replicas only, as each
node's HAProxy reports its own servers."""

from __future__ import annotations

import pytest

from deployer.wait import wait_until

pytestmark = pytest.mark.acceptance


def test_every_node_routes_primary_to_the_leader_and_replicas_to_the_replicas(stack):
    leader = stack.leader().name
    replicas = {n.name for n in stack.spec.nodes} - {leader}

    def up_servers(node):
        servers = stack.haproxy_servers(node)
        return {listener: {s for s, status in by_server.items() if status.startswith("UP")}
                for listener, by_server in servers.items() if listener in ("primary", "replicas")}

    for node in stack.spec.nodes:
        wait_until(f"{node.name}'s HAProxy: primary -> {{{leader}}}, replicas -> {sorted(replicas)}",
                   lambda n=node.name: up_servers(n),
                   lambda up: up == {"primary": {leader}, "replicas": replicas},
                   timeout=stack.budgets.haproxy_reroute_s)

