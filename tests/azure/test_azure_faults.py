"""Faults, heal, the safety rail, teardown and leftovers of the Azure target."""

from __future__ import annotations

import pytest
from azure_fakes import CMP, NET, load

from deployer.targets.base import TargetError

NSG = f"{NET}/networkSecurityGroups/pgha-nsg"


def ours(arm):
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))


def foreign(arm):
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json") | {"tags": {"stack": "pgha"}})


def rules_of(body: dict) -> dict[str, dict]:
    return {r["name"]: r["properties"] for r in body["properties"]["securityRules"]}


def test_crash_vm_powers_off_without_shutdown_and_start_vm_starts(deployed, arm, state, ssh_answers):
    ours(arm)
    arm.lro("POST", f"{CMP}/virtualMachines/pgha-pg1/powerOff")
    deployed.crash_vm("pg1")
    (_, url, _), = arm.sent("POST", "/powerOff")
    assert "skipShutdown=true" in url
    assert state.data["stopped"] == ["pg1"]

    ours(arm)
    arm.lro("POST", f"{CMP}/virtualMachines/pgha-pg1/start")
    deployed.start_vm("pg1")
    assert arm.sent("POST", "/virtualMachines/pgha-pg1/start") and state.data["stopped"] == []
    assert ssh_answers == [("20.1.2.3", 50001)] * 2, "start_vm returns once SSH answers through the NAT port, not before"


def isolated_nsg(node: str, address: str) -> dict:
    """The NSG as Azure returns it with the node's isolation rules in place."""
    nsg = load("nsg.json")
    for name, direction, priority, src, dst in ((f"pgha-isolate-{node}-in", "Inbound", 100, "*", address),
                                                (f"pgha-isolate-{node}-out", "Outbound", 100, address, "*")):
        nsg["properties"]["securityRules"].append({"name": name, "properties": {
            "provisioningState": "Succeeded", "protocol": "*", "access": "Deny", "direction": direction,
            "priority": priority, "sourcePortRange": "*", "destinationPortRange": "*",
            "sourceAddressPrefix": src, "destinationAddressPrefix": dst}})
    nsg["properties"]["flushConnection"] = True
    return nsg


def test_isolate_adds_deny_rules_both_ways_with_flush_and_heal_removes_exactly_them(deployed, arm, state):
    ours(arm)
    arm.add("GET", NSG, load("nsg.json"))
    arm.add("PUT", NSG, isolated_nsg("pg1", "10.0.1.4"))
    deployed.isolate("pg1")
    (_, _, put), = arm.sent("PUT", "/networkSecurityGroups/")
    assert put["properties"]["flushConnection"] is True
    rules = rules_of(put)
    assert rules["pgha-isolate-pg1-in"] == {
        "description": "pgha fault: isolate pg1", "protocol": "*", "access": "Deny", "direction": "Inbound", "priority": 100,
        "sourcePortRange": "*", "destinationPortRange": "*", "sourceAddressPrefix": "*",
        "destinationAddressPrefix": "10.0.1.4"}, "100: reserved for drills, before every spec rule"
    out = rules["pgha-isolate-pg1-out"]
    assert (out["access"], out["direction"], out["priority"], out["sourceAddressPrefix"], out["destinationAddressPrefix"]) \
        == ("Deny", "Outbound", 100, "10.0.1.4", "*")
    spec_rules = {r.name for r in deployed.spec.security_rules}
    assert spec_rules < set(rules) and all("provisioningState" not in p for p in rules.values())
    assert state.data["isolated"] == ["pg1"]

    ours(arm)
    arm.add("GET", NSG, isolated_nsg("pg1", "10.0.1.4"))
    arm.add("PUT", NSG, load("nsg.json"))
    deployed.heal("pg1")
    healed = arm.sent("PUT", "/networkSecurityGroups/")[-1][2]
    assert set(rules_of(healed)) == spec_rules, "heal removes exactly the isolation rules"
    assert rules_of(healed) == {n: p for n, p in rules.items() if n in spec_rules}
    assert healed["properties"]["flushConnection"] is True
    assert state.data["isolated"] == []


def test_isolate_is_idempotent_and_heal_without_isolation_writes_nothing(deployed, arm):
    ours(arm)
    arm.add("GET", NSG, isolated_nsg("pg2", "10.0.1.5"))
    deployed.isolate("pg2")
    ours(arm)
    arm.add("GET", NSG, load("nsg.json"))
    deployed.heal("pg2")
    assert not arm.sent("PUT")


def test_a_second_isolated_node_takes_the_next_free_priorities(deployed, arm):
    ours(arm)
    arm.add("GET", NSG, isolated_nsg("pg1", "10.0.1.4"))
    arm.add("PUT", NSG, load("nsg.json"))
    deployed.isolate("pg2")
    rules = rules_of(arm.sent("PUT")[0][2])
    assert (rules["pgha-isolate-pg2-in"]["priority"], rules["pgha-isolate-pg2-out"]["priority"]) == (101, 101)
    assert "pgha-isolate-pg1-in" in rules, "isolating pg2 keeps pg1 isolated"


@pytest.mark.parametrize("fault", ["crash_vm", "start_vm", "isolate", "heal"])
def test_faults_are_refused_on_a_group_the_deployer_did_not_create(deployed, arm, fault, ssh_answers):
    foreign(arm)
    with pytest.raises(TargetError, match="resource group rg-pgha has tags .*so the deployer did not create it"):
        getattr(deployed, fault)("pg1")
    assert [m for m, _, _ in arm.sent()] == ["GET"] and ssh_answers == []


@pytest.mark.parametrize("fault", ["crash_vm", "start_vm", "isolate", "heal"])
def test_faults_on_an_unknown_node_name_the_known_ones(deployed, arm, fault):
    with pytest.raises(TargetError, match=r"no node 'pg9' in the deployment outputs \(pg1, pg2, pg3\)"):
        getattr(deployed, fault)("pg9")
    assert arm.sent() == []


def test_teardown_deletes_the_group_and_leftovers_is_empty_after_a_404(deployed, arm):
    ours(arm)
    arm.lro("DELETE", "/resourcegroups/rg-pgha")
    deployed.teardown()
    assert arm.sent("DELETE", "/resourcegroups/rg-pgha")
    arm.error("GET", "/resourcegroups/rg-pgha", 404, "ResourceGroupNotFound", "Resource group 'rg-pgha' could not be found.")
    assert deployed.leftovers() == []


def test_teardown_of_a_stack_already_gone_does_nothing(deployed, arm):
    arm.error("GET", "/resourcegroups/rg-pgha", 404, "ResourceGroupNotFound", "Resource group 'rg-pgha' could not be found.")
    deployed.teardown()
    assert not arm.sent("DELETE")


def test_teardown_is_refused_on_a_foreign_group(deployed, arm):
    foreign(arm)
    with pytest.raises(TargetError, match="refusing to delete resource group rg-pgha"):
        deployed.teardown()
    assert not arm.sent("DELETE")


def test_leftovers_lists_the_group_and_what_is_still_in_it(deployed, arm):
    deleting = load("resource_group.json")
    deleting["properties"]["provisioningState"] = "Deleting"
    arm.add("GET", "/resourcegroups/rg-pgha", deleting)
    arm.add("GET", "/resourceGroups/rg-pgha/resources", load("resources_in_group.json"))
    assert deployed.leftovers() == [
        "Microsoft.Resources/resourceGroups rg-pgha (provisioningState Deleting)",
        "Microsoft.Compute/disks pgha-pg1_OsDisk_1",
        "Microsoft.Network/publicIPAddresses pgha-lb-pip",
    ]


@pytest.mark.parametrize("fault", ["isolate", "heal"])
def test_isolate_and_heal_refuse_an_nsg_read_without_the_spec_rules(deployed, arm, fault):
    """What an msrest-era read gave (no rules), here one rule short: the PUT would delete it."""
    nsg = load("nsg.json") if fault == "isolate" else isolated_nsg("pg1", "10.0.1.4")
    rules = nsg["properties"]["securityRules"]
    nsg["properties"]["securityRules"] = [r for r in rules if r["name"] != "allow-mgmt-ssh"]
    ours(arm)
    arm.add("GET", NSG, nsg)
    with pytest.raises(TargetError, match=rf"^refusing to {fault} pg1: NSG pgha-nsg as read lacks the spec's rules "
                                          rf"allow-mgmt-ssh \({len(rules) - 1} rule\(s\) read\)"):
        getattr(deployed, fault)("pg1")
    assert not arm.sent("PUT")
