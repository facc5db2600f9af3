"""``restore --into``'s new stack: the source's spec renamed, its addresses clear of every local
stack's (the host's routing table is shared), and the refusals before anything is deployed."""

from __future__ import annotations

import ipaddress

import pytest

import deployer.state
from deployer import restore_into
from deployer.spec import load_spec
from deployer.targets import TargetError

SOURCE = load_spec()


def _addresses(spec):
    return (str(spec.network.vnet_cidr), str(spec.network.subnet_cidr), [str(n.address) for n in spec.nodes],
            str(spec.local.transit_cidr), str(spec.local.frontend_address))


def test_the_sibling_is_the_source_renamed_with_its_addresses_moved_one_slot():
    sibling = restore_into.sibling_spec(SOURCE, "pitr", [SOURCE])
    assert _addresses(sibling) == ("10.1.0.0/16", "10.1.1.0/24", ["10.1.1.4", "10.1.1.5", "10.1.1.6"],
                                   "198.51.100.16/28", "203.0.113.11")
    assert sibling.name == "pitr" and sibling.patroni == SOURCE.patroni and sibling.backup == SOURCE.backup
    assert sibling.security_rules == SOURCE.security_rules and sibling.postgres == SOURCE.postgres


def test_a_slot_another_stack_holds_is_skipped():
    """Negative control: without the other stack, the first slot would be taken."""
    first = restore_into.sibling_spec(SOURCE, "other", [SOURCE])
    second = restore_into.sibling_spec(SOURCE, "pitr", [SOURCE, first])
    assert _addresses(second)[0] == "10.2.0.0/16" and str(second.local.transit_cidr) == "198.51.100.32/28"
    assert not any(restore_into._clash(second, s) for s in (SOURCE, first))
    assert restore_into._clash(first, restore_into.sibling_spec(SOURCE, "pitr", [SOURCE]))


@pytest.mark.parametrize("field", ["vnet", "links", "frontend"])
def test_each_shared_address_is_a_clash(field):
    sibling = restore_into._moved(SOURCE, "pitr", 1)
    raw = SOURCE.model_dump(mode="json")
    if field == "vnet":
        raw["network"] = {"vnet_cidr": "10.1.128.0/17", "subnet_cidr": "10.1.129.0/24"}
        raw["nodes"] = [{**n, "address": f"10.1.129.{4 + i}"} for i, n in enumerate(raw["nodes"])]
    elif field == "links":
        raw["local"]["transit_cidr"] = "198.51.100.16/28"
    else:
        raw["local"]["frontend_address"] = "203.0.113.11"
    other = type(SOURCE).model_validate(raw)
    assert restore_into._clash(sibling, other) and not restore_into._clash(sibling, SOURCE)


def test_no_free_slot_is_an_error_asking_for_a_spec():
    taken = [restore_into._moved(SOURCE, f"s{i}", i) for i in range(1, restore_into.SLOTS + 1)]
    with pytest.raises(TargetError, match="give it a spec file"):
        restore_into.sibling_spec(SOURCE, "pitr", [SOURCE, *taken])


def test_the_moved_addresses_stay_in_the_ranges_documentation_reserves():
    for slot in range(1, restore_into.SLOTS + 1):
        spec = restore_into._moved(SOURCE, "pitr", slot)
        assert spec.local.transit_cidr.subnet_of(ipaddress.ip_network("198.51.100.0/24"))
        assert spec.local.frontend_address in ipaddress.ip_network("203.0.113.0/24")
        assert spec.network.vnet_cidr.is_private


class _Source:
    def __init__(self, name, enabled=True):
        self.state = type("S", (), {"name": name})()
        self.spec = SOURCE.model_copy(update={"backup": SOURCE.backup.model_copy(update={"enabled": enabled})})


def test_the_new_stack_must_be_new_and_the_source_must_have_backups(tmp_path, monkeypatch):
    monkeypatch.setattr(restore_into, "STATE_ROOT", tmp_path)
    monkeypatch.setattr(deployer.state, "STATE_ROOT", tmp_path)
    with pytest.raises(TargetError, match="stack pgha exists already"):
        restore_into.restore_into(_Source("pgha"), "pgha", None)
    with pytest.raises(TargetError, match="turns backups off"):
        restore_into.restore_into(_Source("pgha", enabled=False), "pitr", None)
    assert not list(tmp_path.iterdir()), "nothing is written before the checks pass"
