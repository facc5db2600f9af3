"""Negative controls of the contract checks: each fails, naming the defect, on a read-back that
breaks it, and passes on the faithful one."""

from __future__ import annotations

import dataclasses

import pytest

from deployer.spec import load_spec
from deployer.state import StackState
from deployer.targets import contract
from deployer.targets.base import PoolMember, RuleInForce
from tests.test_target_base import Recorder

SPEC = load_spec()


class Platform(Recorder):
    """A target whose read-backs are whatever the test sets."""

    rules: list[RuleInForce] = []
    pool: list[PoolMember] = []

    def security_rules(self):
        return self.rules

    def backend_pool(self):
        return self.pool


def faithful_rules() -> list[RuleInForce]:
    return [RuleInForce(r.name, r.priority, r.direction, r.access, r.protocol, (r.source,),
                        tuple(SPEC.rule_ports(r))) for r in SPEC.security_rules]


def platform(rules=None, pool=None) -> Platform:
    target = Platform(SPEC, StackState(name="pgha", target="recorder", spec_path="stack.yaml"))
    target.rules = faithful_rules() if rules is None else rules
    target.pool = [PoolMember(n.name, str(n.address), True) for n in SPEC.nodes] if pool is None else pool
    return target


def replaced(name: str, **changes) -> list[RuleInForce]:
    return [dataclasses.replace(r, **changes) if r.name == name else r for r in faithful_rules()]


def test_the_faithful_read_back_passes():
    contract.check_readbacks(platform(), expect_members=True)
    contract.check_backend_pool(platform(), expect_members=True, healthy=True)


@pytest.mark.parametrize("rules, message", [
    (faithful_rules() + [RuleInForce("unmanaged:inet/pgha_nsg/forward#77", 0, "inbound", "allow", "tcp",
                                     ("0.0.0.0/0",), (5432,))], "rules the spec does not have.*unmanaged"),
    (faithful_rules() + [faithful_rules()[0]], "rules the spec does not have \\(or twice\\): allow-clients-haproxy"),
    ([r for r in faithful_rules() if r.name != "allow-cluster"], "rule allow-cluster missing"),
    (replaced("allow-cluster", ports=(5432, 8008)), "rule allow-cluster: expected"),
    (replaced("allow-mgmt-ssh", sources=("Internet",)), "rule allow-mgmt-ssh: expected"),
    (replaced("allow-lb-probe", access="deny"), "rule allow-lb-probe: expected"),
], ids=["extra", "duplicate", "missing", "changed-port", "changed-source", "changed-access"])
def test_security_rules_fail_on_a_broken_read_back(rules, message):
    with pytest.raises(AssertionError, match=message):
        contract.check_security_rules(platform(rules=rules))


def test_an_effective_rule_opening_a_protected_port_to_the_internet_fails():
    opened = RuleInForce("AllowAll", 65000, "inbound", "allow", "any", ("not 10.0.0.0/16",), (), scope="pg1")
    with pytest.raises(AssertionError, match=r"AllowAll \(pg1\) opens \[22, 2379, 2380, 5432, 8008\]"):
        contract.check_security_rules(platform(rules=faithful_rules() + [opened]))


@pytest.mark.parametrize("pool, healthy, message", [
    ([PoolMember("pg1", "10.0.1.4", True), PoolMember("pg2", "10.0.1.5", True)], False, "backend pool: expected"),
    ([PoolMember(n.name, str(n.address), n.name != "pg3") for n in SPEC.nodes], True, r"\['pg3'\] are unhealthy"),
    ([PoolMember(n.name, "10.0.1.99", True) for n in SPEC.nodes], False, "backend pool: expected"),
], ids=["missing-member", "unhealthy-member", "wrong-address"])
def test_backend_pool_fails_on_a_broken_read_back(pool, healthy, message):
    with pytest.raises(AssertionError, match=message):
        contract.check_backend_pool(platform(pool=pool), expect_members=True, healthy=healthy)


def test_a_pool_that_is_not_empty_before_attach_fails():
    with pytest.raises(AssertionError, match="backend pool: expected \\[\\]"):
        contract.check_backend_pool(platform(), expect_members=False)


def test_an_empty_or_mistyped_read_back_fails():
    with pytest.raises(AssertionError, match="expected RuleInForce items"):
        contract.check_security_rules(platform(rules=[]))
    with pytest.raises(AssertionError, match="expected PoolMember items"):
        contract.check_backend_pool(platform(pool=[("pg1", "10.0.1.4", True)]), expect_members=True)
    target = platform()
    for answer in ("nothing left", [1]):
        target.leftovers = lambda answer=answer: answer
        with pytest.raises(AssertionError, match="expected list\\[str\\]"):
            contract.check_leftovers(target)


def test_an_extra_rule_is_reported_with_what_it_admits():
    extra = RuleInForce("unmanaged:x", 0, "inbound", "allow", "tcp", ("0.0.0.0/0",), (5432,))
    with pytest.raises(AssertionError) as err:
        contract.check_security_rules(platform(rules=faithful_rules() + [extra]))
    assert str(err.value).startswith(f"the NSG holds rules the spec does not have (or twice): unmanaged:x: {extra}")
