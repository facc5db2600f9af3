"""Patroni replication as PostgreSQL itself reports it, on every node."""

from __future__ import annotations

import uuid

import pytest

from deployer import patroni
from deployer.wait import wait_until

pytestmark = pytest.mark.acceptance


def test_leader_streams_to_every_replica(stack):
    n = len(stack.spec.nodes)
    members = wait_until("a healthy cluster", stack.cluster, lambda m: patroni.healthy(m, n),
                         timeout=stack.budgets.converge_s)
    leader = next(m for m in members if m.role == "leader")
    rows = stack.psql(leader.name, "SELECT client_addr, state FROM pg_stat_replication ORDER BY client_addr")
    expected = sorted([m.address, "streaming"] for m in members if m.role == "replica")
    assert sorted(rows) == expected, f"pg_stat_replication on {leader.name}: {rows}, expected {expected}"


def test_only_the_leader_is_writable(stack):
    leader = stack.leader()
    for node in stack.spec.nodes:
        [[in_recovery]] = stack.psql(node.name, "SELECT pg_is_in_recovery()")
        assert (in_recovery == "f") == (node.name == leader.name), f"{node.name}: pg_is_in_recovery={in_recovery}"


def test_a_committed_write_reaches_every_replica(stack):
    key = uuid.uuid4().hex
    ports = stack.spec.ports
    stack.sql(ports.haproxy_primary, "CREATE TABLE IF NOT EXISTS acceptance (key text PRIMARY KEY)")
    stack.sql(ports.haproxy_primary, f"INSERT INTO acceptance VALUES ('{key}')")
    for member in (m for m in stack.cluster() if m.role == "replica"):
        wait_until(f"row {key} on replica {member.name}",
                   lambda m=member: stack.psql(m.name, f"SELECT count(*) FROM acceptance WHERE key = '{key}'", "app"),
                   lambda rows: rows == [["1"]], timeout=stack.budgets.replica_visible_s)


def test_every_replica_receives_directly_from_the_leader_on_its_timeline(stack):
    """``pg_stat_wal_receiver`` on each replica: streaming, from the leader's address, on one timeline."""
    members = stack.cluster()
    leader = next(m for m in members if m.role == "leader")
    for member in (m for m in members if m.role == "replica"):
        rows = stack.psql(member.name, "SELECT status, sender_host, received_tli FROM pg_stat_wal_receiver")
        assert rows == [["streaming", leader.address, str(leader.timeline)]], \
            f"{member.name}: wal receiver {rows}, expected streaming from {leader.name} ({leader.address}) " \
            f"on timeline {leader.timeline}"
