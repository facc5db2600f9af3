"""Smoke checks right after a deploy (``pytest -m smoke``): the stack is up, routed and closed."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from deployer import patroni
from deployer.spec import PROTECTED_PORTS
from deployer.targets import contract
from deployer.wait import wait_until

pytestmark = pytest.mark.smoke


def test_one_leader_and_streaming_replicas(stack):
    n = len(stack.spec.nodes)
    members = wait_until(f"one running leader and {n - 1} streaming replicas with lag 0 (Patroni /cluster)",
                         stack.cluster, lambda m: patroni.healthy(m, n), timeout=stack.budgets.converge_s)
    assert len({m.timeline for m in members}) == 1, f"timelines disagree: {members}"


def test_every_node_healthy_in_the_load_balancer(stack):
    stack.target.wait_pool_healthy()
    contract.check_backend_pool(stack.target, expect_members=True, healthy=True)


def test_readbacks_satisfy_the_target_contract(stack):
    """The same checks the Azure contract tests run: rules in force equal the spec, nothing protected
    is open to the internet, the pool holds every node, leftovers answers in lines."""
    contract.check_readbacks(stack.target, expect_members=True)


def test_write_lands_on_leader_and_reads_back_from_a_replica(stack):
    ports = stack.spec.ports
    key = uuid.uuid4().hex
    stack.sql(ports.haproxy_primary, "CREATE TABLE IF NOT EXISTS smoke (key text PRIMARY KEY, at timestamptz DEFAULT now())")
    [[written_on]] = stack.sql(ports.haproxy_primary,
                               f"INSERT INTO smoke (key) VALUES ('{key}') RETURNING host(inet_server_addr())")
    leader = stack.leader()
    assert written_on == leader.address, f"write answered by {written_on}, Patroni's leader is {leader.name} ({leader.address})"
    replicas = {m.address for m in stack.cluster() if m.role == "replica"}

    def read_back():
        return stack.sql(ports.haproxy_replicas,
                         f"SELECT host(inet_server_addr()), pg_is_in_recovery() FROM smoke WHERE key = '{key}'")

    rows = wait_until(f"row {key} readable through port {ports.haproxy_replicas}", read_back, lambda r: len(r) == 1,
                      timeout=stack.budgets.replica_visible_s)
    served_by, in_recovery = rows[0]
    assert served_by in replicas and in_recovery == "True", \
        f"read answered by {served_by} (in recovery: {in_recovery}); replicas are {sorted(replicas)}"


def test_from_the_internet_only_the_client_ports_answer(stack):
    """From the internet vantage, in parallel: on the frontend, every port the spec names answers
    exactly when it is a client port; on every node's own address, no protected port answers."""
    ports, (frontend, _) = stack.spec.ports, stack.target.frontend()
    clients = {ports.haproxy_primary, ports.haproxy_replicas}
    cases = [(frontend, port, port in clients) for port in sorted(set(ports.model_dump().values()))]
    cases += [(str(n.address), getattr(ports, name), False) for n in stack.spec.nodes for name in PROTECTED_PORTS]
    with ThreadPoolExecutor(len(cases)) as pool:
        results = list(pool.map(lambda c: stack.target.probe("internet", c[0], c[1], timeout=2), cases))
    wrong = [f"{dst}:{port} expected {'open' if want else 'closed'}, probe: {r.detail}"
             for (dst, port, want), r in zip(cases, results) if r.reachable != want]
    assert not wrong, "from the internet: " + "; ".join(wrong)
