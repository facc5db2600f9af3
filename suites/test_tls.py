"""TLS everywhere, as clients see it (``deployer.tls_probe``): from the ``internet`` vantage to the
load balancer's frontend and from the ``vnet`` vantage (a node of the cluster's subnet, not the one
probed) to every node's PostgreSQL, Patroni REST API and etcd client port. Plain text is refused,
TLS before 1.2 is refused, every certificate chains to the stack's CA, names the address the client
dialled and lives long enough; etcd refuses a client without a certificate. Each refusal is paired
with its negative control: the same probe done right is accepted, so a refusal is the server's."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deployer import patroni, tls_probe
from deployer.inventory import TLS_ON_NODE
from deployer.pki import san_names
from deployer.targets import TargetError

pytestmark = pytest.mark.acceptance


def _others(stack):
    """``(vantage node, probed node)`` pairs: every node probed from the next one in spec order."""
    names = [n.name for n in stack.spec.nodes]
    return [(names[(i + 1) % len(names)], name) for i, name in enumerate(names)]


def _services(stack):
    """Every node's TLS port: ``(vantage node, probed node, its address, port, starttls)``."""
    ports = stack.spec.ports
    return [(via, node, stack.target.address_of(node), port, starttls) for via, node in _others(stack)
            for port, starttls in ((ports.postgres, "postgres"), (ports.patroni, None), (ports.etcd_client, None))]


def _each(fn, items: list) -> list:
    """``fn`` over ``items`` at once (each probe mostly waits on SSH and the network), in order."""
    with ThreadPoolExecutor(max(1, len(items))) as pool:
        return list(pool.map(fn, items))


def _refused_sql(run) -> str | None:
    """None when ``run()`` succeeded (the connection was accepted), else the error it raised."""
    try:
        run()
    except TargetError as exc:
        return str(exc)
    return None


@pytest.mark.smoke
def test_postgresql_refuses_plain_text_through_the_frontend_and_on_every_node(stack):
    """``sslmode=disable`` fails where ``sslmode=verify-full`` against the stack's CA succeeds: from
    the internet through the frontend, and from a node of the subnet to every node's 5432."""
    port = stack.spec.ports.haproxy_primary
    frontend = stack.target.frontend()[0]
    assert _refused_sql(lambda: stack.sql(port, "SELECT 1")) is None, \
        f"expected a verify-full connection through {frontend}:{port} to succeed (the negative control)"
    accepted = [f"the frontend {frontend}:{port}"] if _refused_sql(lambda: stack.sql(port, "SELECT 1", "disable")) is None else []
    pg = stack.spec.ports.postgres

    def direct(pair, sslmode):
        via, node = pair
        return _refused_sql(lambda: stack.sql_through(via, pg, "SELECT 1", host=stack.target.address_of(node),
                                                      sslmode=sslmode))
    pairs = _others(stack)
    for (via, node), error in zip(pairs, _each(lambda p: direct(p, "verify-full"), pairs)):
        assert error is None, (f"expected a verify-full connection from {via} to {node} "
                               f"({stack.target.address_of(node)}:{pg}) to succeed: {error}")
    accepted += [f"{node} ({stack.target.address_of(node)}:{pg}) from {via}"
                 for (via, node), error in zip(pairs, _each(lambda p: direct(p, "disable"), pairs)) if error is None]
    assert not accepted, f"expected every plain-text (sslmode=disable) connection refused; accepted without TLS: {accepted}"


def test_tls_before_1_2_is_refused_by_postgresql_patroni_and_etcd(stack):
    """A TLS 1.1 handshake (the client's own floor lowered, so the refusal is the server's) fails on
    every node's 5432, 8008 and 2379, while a TLS 1.2 handshake to the same port succeeds."""
    def shake(service, protocol):
        via, node, address, port, starttls = service
        return node, tls_probe.handshake(stack.on_node(via), address, port, protocol=protocol, starttls=starttls)
    services = _services(stack)
    new = [f"{node}: {h}" for node, h in _each(lambda s: shake(s, "tls1_2"), services) if not h.accepted]
    old = [f"{node}: {h}" for node, h in _each(lambda s: shake(s, "tls1_1"), services) if h.accepted]
    assert not new, "expected TLS 1.2 accepted (the negative control); refused: " + "; ".join(new)
    assert not old, "expected TLS 1.0/1.1 refused; accepted: " + "; ".join(old)


def test_every_certificate_chains_to_the_stacks_ca_names_its_address_and_lives_long_enough(stack):
    """Every node's certificate on 5432, 8008 and 2379 (seen from another node) and the one behind
    the frontend (seen from the internet): the chain verifies against the stack's CA, the name the
    client dialled is in it, and it lives more than ``tls_probe.FAIL_DAYS`` (a warning below
    ``WARN_DAYS``)."""
    port = stack.spec.ports.haproxy_primary
    frontend = stack.target.frontend()[0]
    seen = [(f"the frontend {frontend}:{port}",
             tls_probe.handshake(stack.target.vantage(), frontend, port, starttls="postgres"), frontend)]
    seen += _each(lambda s: (f"{s[1]} ({s[2]}:{s[3]})", tls_probe.handshake(stack.on_node(s[0]), s[2], s[3],
                                                                             starttls=s[4]), s[2]), _services(stack))
    problems, soon = [], []
    for where, shake, name in seen:
        if not shake.accepted or not shake.chain:
            problems.append(f"{where}: no certificate: {shake}")
            continue
        leaf = shake.chain[0]
        if not tls_probe.name_matches(leaf, name):
            problems.append(f"{where}: its certificate is not issued for {name} (it names {san_names(leaf)})")
        if problem := tls_probe.chain_problem(shake.chain, Path(stack.target.ca_file)):
            problems.append(f"{where}: {problem}")
        verdict, days = tls_probe.expiry_verdict(shake.chain[0])
        if verdict == "fail":
            problems.append(f"{where}: its certificate ends in {days:.1f} days (fail below {tls_probe.FAIL_DAYS})")
        elif verdict == "warn":
            soon.append(f"{where}: {days:.1f} days")
    for line in soon:
        warnings.warn(f"certificate ends within {tls_probe.WARN_DAYS} days: {line}", stacklevel=1)
    assert not problems, (f"expected every certificate to chain to {stack.target.ca_file}, name what was dialled and "
                          "live long enough; found: " + "; ".join(problems))


def test_etcd_refuses_a_client_without_a_certificate(stack):
    """``etcdctl`` with the CA but no client certificate fails against every member; with the
    node's certificate it succeeds (the negative control)."""
    ca, port = TLS_ON_NODE["ca"], stack.spec.ports.etcd_client

    def etcdctl(pair, *tls):
        via, node = pair
        endpoint = f"https://{stack.target.address_of(node)}:{port}"
        return endpoint, stack.ssh(via, ["sudo", "env", "ETCDCTL_API=3", "etcdctl", f"--endpoints={endpoint}",
                                         "--dial-timeout=3s", "--command-timeout=3s", f"--cacert={ca}", *tls,
                                         "get", "/probe"], check=False)
    pairs = _others(stack)
    for (via, _), (endpoint, ok) in zip(pairs, _each(
            lambda p: etcdctl(p, f"--cert={TLS_ON_NODE['cert']}", f"--key={TLS_ON_NODE['key']}"), pairs)):
        assert ok.returncode == 0, f"expected etcdctl with {via}'s certificate to read from {endpoint}: {ok.stderr.strip()}"
    accepted = [f"{node} ({endpoint}) from {via}"
                for (via, node), (endpoint, bare) in zip(pairs, _each(etcdctl, pairs)) if bare.returncode == 0]
    assert not accepted, f"expected etcd to refuse a client without a certificate; it answered: {accepted}"


def test_patronis_api_refuses_plain_http(stack):
    """A plain-HTTP request to every node's 8008 gets no application answer (``serves_plain_http``),
    while HTTPS with the stack's CA answers (``GET /patroni``: the negative control)."""
    pairs = _others(stack)
    for _, node in pairs:
        assert patroni.get(stack.target, node, "/patroni").get("state"), f"expected {node}'s API to answer over HTTPS"
    lines = _each(lambda p: tls_probe.plaintext_http(stack.on_node(p[0]), stack.target.address_of(p[1]),
                                                     stack.spec.ports.patroni, "/patroni"), pairs)
    served = [f"{node}: {line}" for (_, node), line in zip(pairs, lines) if tls_probe.serves_plain_http(line)]
    assert not served, f"expected Patroni's REST API to refuse plain HTTP; it answered: {served}"
