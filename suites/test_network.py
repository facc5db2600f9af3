"""The NSG as probes observe it: what the spec allows between nodes passes, the rest does not."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.acceptance


def test_between_nodes_exactly_the_allowed_ports_pass(stack):
    """From each node to every other node, every port the spec names, in parallel."""
    spec = stack.spec
    ports = sorted(set(spec.ports.model_dump().values()))
    cases = [(a, b, port) for a in spec.nodes for b in spec.nodes if a != b for port in ports]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda c: stack.target.probe(c[0].name, str(c[1].address), c[2], timeout=2), cases))
    wrong = [f"{a.name}->{b.name}:{port} expected {'open' if want else 'closed'}, probe: {r.detail}"
             for (a, b, port), r in zip(cases, results)
             if r.reachable != (want := spec.admits("VirtualNetwork", str(a.address), port))]
    assert not wrong, "\n".join(wrong)


def test_client_ports_open_through_the_frontend(stack):
    address, _ = stack.target.frontend()
    for port in (stack.spec.ports.haproxy_primary, stack.spec.ports.haproxy_replicas):
        result = stack.target.probe("internet", address, port)
        assert result.reachable, f"frontend {address}:{port} from the internet: {result.detail}"
