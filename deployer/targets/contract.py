"""One set of checks on a target's read-backs, run against every target (local for real, Azure
through its contract tests), so no suite ever needs to know which target it talks to.

Each check compares what the platform reports with what the spec expects and raises AssertionError
naming the expected and the seen value.
"""

from __future__ import annotations

from deployer.spec import PROTECTED_PORTS, admits_internet
from deployer.targets.base import PoolMember, RuleInForce, Target


def check_security_rules(target: Target) -> list[RuleInForce]:
    """The NSG holds exactly the spec's rules (a missing, changed, duplicated or extra rule fails,
    whatever marks it), and no rule in force anywhere opens a protected port to the internet."""
    spec = target.spec
    rules = target.security_rules()
    assert rules and all(isinstance(r, RuleInForce) for r in rules), f"expected RuleInForce items, got {rules!r}"
    names = [r.name for r in rules if r.scope == "nsg"]
    extra = sorted(set(names) - {r.name for r in spec.security_rules}) + sorted({n for n in names if names.count(n) > 1})
    assert not extra, (f"the NSG holds rules the spec does not have (or twice): "
                       + "; ".join(f"{n}: {next(r for r in rules if r.name == n)}" for n in extra))
    in_force = {r.name: r for r in rules if r.scope == "nsg"}
    for rule in spec.security_rules:
        got = in_force.get(rule.name)
        assert got is not None, f"rule {rule.name} missing; the platform reports {sorted(in_force)}"
        expected = (rule.priority, rule.direction, rule.access, rule.protocol,
                    tuple(sorted(target.resolve_source(rule.source))), tuple(spec.rule_ports(rule)))
        seen = (got.priority, got.direction, got.access, got.protocol, tuple(sorted(got.sources)), got.ports)
        assert seen == expected, f"rule {rule.name}: expected {expected}, the platform reports {seen}"
    protected = {getattr(spec.ports, p) for p in PROTECTED_PORTS}
    for r in rules:
        if r.direction == "inbound" and r.access == "allow" and any(admits_internet(s) for s in r.sources):
            opened = protected if not r.ports else protected & set(r.ports)
            assert not opened, f"rule {r.name} ({r.scope}) opens {sorted(opened)} to {r.sources}"
    return rules


def check_backend_pool(target: Target, expect_members: bool, healthy: bool = False) -> list[PoolMember]:
    """The pool holds exactly the spec's nodes in spec order (or none before attach); with
    ``healthy``, the load balancer's probe reports every one of them up."""
    pool = target.backend_pool()
    assert all(isinstance(m, PoolMember) for m in pool), f"expected PoolMember items, got {pool!r}"
    expected = [(n.name, str(n.address)) for n in target.spec.nodes] if expect_members else []
    seen = [(m.node, m.address) for m in pool]
    assert seen == expected, f"backend pool: expected {expected}, the load balancer reports {seen}"
    down = [m.node for m in pool if not m.healthy]
    assert not (healthy and down), f"backend pool members {down} are unhealthy in the load balancer's probe"
    return pool


def check_spread(before: dict[str, int], after: dict[str, int], minimum_members: int = 2) -> dict[str, int]:
    """Between two readings of ``Target.lb_connections``, the load balancer sent new connections to
    at least ``minimum_members`` members; returns each member's increase."""
    rose = {node: count - before.get(node, 0) for node, count in after.items()}
    spread = sorted(node for node, delta in rose.items() if delta > 0)
    assert len(spread) >= minimum_members, (
        f"the load balancer sent the new connections to {len(spread)} member(s) {spread}, expected at least "
        f"{minimum_members}: its counters went from {dict(sorted(before.items()))} to {dict(sorted(after.items()))}")
    return rose


def check_leftovers(target: Target) -> list[str]:
    """``leftovers`` answers with readable lines."""
    left = target.leftovers()
    assert isinstance(left, list) and all(isinstance(x, str) for x in left), f"expected list[str], got {left!r}"
    return left


def check_readbacks(target: Target, expect_members: bool = True) -> None:
    """All read-back checks of the contract."""
    check_security_rules(target)
    check_backend_pool(target, expect_members)
    check_leftovers(target)
