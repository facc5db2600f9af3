"""HAProxy on every node routes 5000 to the leader only and 5001 to the replicas only, as each
node's HAProxy reports its own servers, and runs what the haproxy role renders from the spec."""

from __future__ import annotations

import pytest

from deployer import haproxy_config
from deployer.inventory import role_defaults
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



def test_through_every_nodes_haproxy_5000_reaches_the_leader_and_5001_every_replica(stack):
    """What a client of a node's HAProxy gets, as PostgreSQL answers it: 5000 is the writable leader;
    5001, asked once per replica and once more, lands only on replicas in recovery and on each of them."""
    leader = stack.leader()
    replicas = {m.address for m in stack.cluster() if m.role == "replica"}
    query = "SELECT host(inet_server_addr()), pg_is_in_recovery()"
    for node in stack.spec.nodes:
        ports = stack.spec.ports
        assert stack.sql_through(node.name, ports.haproxy_primary, query) == [[leader.address, "f"]], \
            f"{node.name}:{ports.haproxy_primary} did not land on the writable leader {leader.name} ({leader.address})"
        seen = [tuple(row) for _ in range(len(replicas) + 1)
                for row in stack.sql_through(node.name, ports.haproxy_replicas, query)]
        assert {s for s, _ in seen} == replicas and {r for _, r in seen} == {"t"}, \
            f"{node.name}:{ports.haproxy_replicas} answered by {seen}; the replicas are {sorted(replicas)}"


def test_every_nodes_haproxy_runs_what_the_role_renders_from_the_spec(stack):
    """Every server option, timeout and check setting, as each node's HAProxy reports it (runtime API)
    and as it loaded it (the file its process was started with, unchanged since): the same as the
    haproxy role renders for the spec (``deployer.haproxy_config``); each difference names the node,
    the section and the setting."""
    expected = haproxy_config.expected_config(stack.spec, stack.target.ansible_vars())
    sock = role_defaults()["haproxy"]["haproxy_stats_socket"]
    wrong = []
    for node in stack.spec.nodes:
        collected = stack.ssh(node.name, ["sudo", "python3", "-c", haproxy_config.COLLECT, sock]).stdout
        wrong += haproxy_config.differences(node.name, expected, haproxy_config.parse_collected(collected))
    assert not wrong, (f"{len(wrong)} HAProxy setting(s) differ from what the role renders from the spec: {wrong[0]}\n"
                       + "\n".join(wrong[1:]))
