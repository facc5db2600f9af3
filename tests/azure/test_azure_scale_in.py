"""Scale in on the Azure target: ``detach`` takes a NIC out of the backend pool, provision deletes the
VM, NIC and OS disk of a node the spec dropped before it deploys, and attach deploys only the spec's
nodes. Payloads: ``fixtures/nic_in_pool.json`` (``NetworkInterfaces_Get``) and
``fixtures/vms_in_group.json`` (``VirtualMachines_List``)."""

from __future__ import annotations

import copy
import json
import logging

import pytest
from azure_fakes import CMP, DEPLOYMENT, NET, RG, SUB, answer_keys, load

from deployer.targets.base import TargetError

NIC = f"{NET}/networkInterfaces/pgha-pg3-nic"
POOL = f"{NET}/loadBalancers/pgha-lb/backendAddressPools/nodes"
POOL_ID = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/loadBalancers/pgha-lb/backendAddressPools/nodes"


def pool_without(*nodes: str) -> dict:
    """``backend_pool.json`` without the ip configurations of ``nodes``' NICs."""
    pool = load("backend_pool.json")
    configs = pool["properties"]["backendIPConfigurations"]
    pool["properties"]["backendIPConfigurations"] = [c for c in configs
                                                     if not any(f"/pgha-{n}-nic/" in c["id"] for n in nodes)]
    return pool


def answer_pool_read(arm, pool: dict):
    """One ``backend_pool()`` read: the pool, then the health of each of its two rules."""
    lb = f"{NET}/loadBalancers/pgha-lb"
    arm.add("GET", POOL, pool)
    arm.lro("POST", f"{lb}/loadBalancingRules/haproxy-primary/health", load("lb_health_primary.json"), header="location")
    arm.lro("POST", f"{lb}/loadBalancingRules/haproxy-replicas/health", load("lb_health_primary.json"), header="location")


def nic_out_of_pool() -> dict:
    nic = load("nic_in_pool.json")
    nic["properties"]["ipConfigurations"][0]["properties"]["loadBalancerBackendAddressPools"] = []
    return nic


# ----- detach -----

def test_detach_sends_the_nic_without_the_pool_and_waits_until_the_pool_lacks_it(deployed, arm):
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("GET", NIC, load("nic_in_pool.json"))
    arm.async_op("PUT", NIC, {"status": "Succeeded"}, accepted=nic_out_of_pool(), final=nic_out_of_pool())
    answer_pool_read(arm, load("backend_pool.json"))  # the load balancer still lists pg3 ...
    answer_pool_read(arm, pool_without("pg3"))  # ... then no more
    deployed.detach("pg3")

    assert [(m, u.split("?")[0].rpartition("/providers/")[2]) for m, u, _ in arm.sent() if m not in ("GET", "POST")] \
        == [("PUT", "Microsoft.Network/networkInterfaces/pgha-pg3-nic")], "one write: the NIC"
    (_, _, body), = arm.sent("PUT", "/networkInterfaces/pgha-pg3-nic?")
    read = load("nic_in_pool.json")
    config, was = body["properties"]["ipConfigurations"][0]["properties"], read["properties"]["ipConfigurations"][0]["properties"]
    assert was["loadBalancerBackendAddressPools"] == [{"id": POOL_ID}]
    assert config["loadBalancerBackendAddressPools"] == [], "the pool reference is gone"
    assert config["loadBalancerInboundNatRules"] == was["loadBalancerInboundNatRules"], "SSH's NAT rule stays"
    assert {k: config[k] for k in ("privateIPAddress", "privateIPAllocationMethod", "subnet", "primary")} == \
        {k: was[k] for k in ("privateIPAddress", "privateIPAllocationMethod", "subnet", "primary")}
    assert (body["location"], body["tags"]) == (read["location"], read["tags"])
    assert "provisioningState" not in config and "macAddress" not in body["properties"], "read-only fields not sent"
    assert len(arm.sent("GET", "/backendAddressPools/nodes")) == 2, "returns once the pool no longer lists pg3"


def test_detach_of_a_nic_already_out_sends_nothing(deployed, arm):
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("GET", NIC, nic_out_of_pool())
    answer_pool_read(arm, pool_without("pg3"))
    deployed.detach("pg3")
    assert not arm.sent("PUT") and not arm.sent("DELETE")


def test_detach_refuses_a_group_the_deployer_did_not_create(deployed, arm):
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json") | {"tags": {"owner": "someone-else"}})
    with pytest.raises(TargetError, match="refusing to take pg3 out of the backend pool: resource group rg-pgha"):
        deployed.detach("pg3")
    assert [m for m, _, _ in arm.sent()] == ["GET"]


# ----- provision after a scale in -----

def vms(*extra: str, base: str = "pg3") -> dict:
    """``vms_in_group.json`` (pg1-pg3) and a VM of each of ``extra`` nodes, written as the fixture's
    ``base`` VM with that node's name (a stack deployed with more nodes than the spec now has)."""
    listed = load("vms_in_group.json")
    template = json.dumps(next(v for v in listed["value"] if v["properties"]["osProfile"]["computerName"] == base))
    listed["value"] += [json.loads(template.replace(f"pgha-{base}", f"pgha-{node}").replace(f'"{base}"', f'"{node}"'))
                        for node in extra]
    return listed


def answer_scaled_in_provision(arm, listed: dict):
    """A provision of the deployed stack (attach ran) up to its VMs listed as ``listed``."""
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("GET", POOL, load("backend_pool.json"))
    arm.add("PUT", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("GET", f"{CMP}/virtualMachines", listed)


def answer_deployment(arm):
    arm.lro("POST", f"{DEPLOYMENT}/whatIf", load("what_if_attach.json"))
    arm.async_op("PUT", DEPLOYMENT, {"status": "Succeeded"}, load("deployment_accepted.json"),
                 load("deployment_succeeded.json"))


def test_provision_deletes_vm_then_nic_then_disk_of_each_dropped_node_before_deploying(deployed, arm, caplog):
    """5 -> 3 nodes: pg4 and pg5 were retired (``deployer.scaling``); the spec's pg1-pg3 stay."""
    answer_scaled_in_provision(arm, vms("pg4", "pg5"))
    for node in ("pg4", "pg5"):
        arm.lro("DELETE", f"{CMP}/virtualMachines/pgha-{node}")
        arm.lro("DELETE", f"{NET}/networkInterfaces/pgha-{node}-nic")
        arm.lro("DELETE", f"{CMP}/disks/pgha-{node}-osdisk")
    answer_deployment(arm)
    answer_keys(arm)
    with caplog.at_level(logging.INFO, logger="deployer.azure"):
        deployed.provision()

    writes = [(m, *u.split("?")[0].rsplit("/", 2)[-2:]) for m, u, _ in arm.sent() if m in ("PUT", "DELETE")]
    assert writes == [("PUT", "resourcegroups", "rg-pgha"),
                      ("DELETE", "virtualMachines", "pgha-pg4"), ("DELETE", "networkInterfaces", "pgha-pg4-nic"),
                      ("DELETE", "disks", "pgha-pg4-osdisk"),
                      ("DELETE", "virtualMachines", "pgha-pg5"), ("DELETE", "networkInterfaces", "pgha-pg5-nic"),
                      ("DELETE", "disks", "pgha-pg5-osdisk"),
                      ("PUT", "deployments", "pgha-main")], "VM, NIC, disk per dropped node, before the deployment"
    assert arm.sent("DELETE", "/Microsoft.Compute/virtualMachines/") and arm.sent("DELETE", "/Microsoft.Compute/disks/")
    removed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Removed ")]
    assert removed == [f"Removed {n}, which the spec no longer has: VM pgha-{n}, NIC pgha-{n}-nic and OS disk "
                       f"pgha-{n}-osdisk deleted." for n in ("pg4", "pg5")]


def test_provision_leaves_every_vm_it_cannot_tell_is_a_dropped_node(target, arm):
    """A spec node's VM, a VM without the stack's tags and one without a computer name are never deleted."""
    listed = vms("pg4", "pg5")
    pg4, pg5 = listed["value"][3:]
    pg4["tags"] = {"owner": "someone-else"}
    del pg5["properties"]["osProfile"]
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("PUT", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("GET", f"{CMP}/virtualMachines", listed)
    answer_deployment(arm)
    answer_keys(arm)
    target.provision()
    assert not arm.sent("DELETE")


def test_a_failed_delete_names_the_resource_and_azures_message_and_stops(deployed, arm):
    answer_scaled_in_provision(arm, vms("pg4"))
    arm.async_op("DELETE", f"{CMP}/virtualMachines/pgha-pg4", {"status": "Failed", "error": {
        "code": "OperationNotAllowed", "message": "Operation 'delete' is not allowed on VM 'pgha-pg4' since the VM "
                                                  "is marked for deletion."}})
    with pytest.raises(TargetError, match=r"^delete VM pgha-pg4 \(pg4\) failed in Azure: OperationNotAllowed: "
                                          r"Operation 'delete' is not allowed on VM 'pgha-pg4'"):
        deployed.provision()
    assert len(arm.sent("DELETE")) == 1 and not arm.sent("PUT", "/deployments/"), "no NIC, disk or deployment after it"


# ----- attach after a scale in -----

def test_attach_deploys_only_the_spec_nodes(deployed, arm, state):
    """The deployment on record still has pg4 and pg5 (the stack had 5 nodes); attach deploys the
    spec's three and waits for exactly those in the pool: a retired node is never put back."""
    five = copy.deepcopy(state.data["outputs"]["nodes"])
    five += [dict(five[2], name=n, nicName=f"pgha-{n}-nic", vmName=f"pgha-{n}", sshPort=p)
             for n, p in (("pg4", 50004), ("pg5", 50005))]
    state.data["outputs"]["nodes"] = five
    answer_deployment(arm)
    answer_pool_read(arm, load("backend_pool.json"))
    deployed.attach()
    (_, _, body), = arm.sent("PUT", "/deployments/pgha-main?")
    assert [n["name"] for n in body["properties"]["parameters"]["nodes"]["value"]] == ["pg1", "pg2", "pg3"]
    assert not arm.sent(contains="pg4") and not arm.sent(contains="pg5")
