"""Scale in on Azure: a leaving node's NIC out of the backend pool, then, at the next provision, the
VM, NIC and OS disk of every node the spec no longer has deleted before the deployment.

Pool membership lives on the NIC (its ip configuration references the pool), so leaving the pool is
a NIC update that keeps everything else of it, its inbound NAT rule above all: SSH still reaches
the node through it while ``deployer.scaling.retire`` stops its services. The deployment of
``main.bicep`` is incremental: it never deletes what its template no longer has, and the load
balancer it redeploys drops the leaving node's NAT rule, which ARM refuses while a NIC still
references it. So provision deletes those resources first. Which VMs are the stack's and of which
node is what ARM reports (the tags the deployer puts on every resource, and ``osProfile.computerName``,
which the Bicep sets to the node's name); the NIC and OS disk are those the VM's own record names.
"""

from __future__ import annotations

from collections.abc import Collection

from deployer.targets.azure.clients import Clients, rest
from deployer.targets.azure.deployment import ours
from deployer.targets.azure.errors import azure_errors


def leave_pool(az: Clients, rg: str, nic_name: str, pool_id: str, node: str) -> bool:
    """Drop the reference to ``pool_id`` (compared case-insensitively, as ARM does) from every ip
    configuration of the NIC and write the NIC back, waiting for it; the rest of the NIC is sent as
    read (the SDK leaves its read-only fields out). False, writing nothing, when no ip configuration
    references the pool."""
    with azure_errors("read", f"NIC {nic_name} ({node})"):
        found = az.network.network_interfaces.get(rg, nic_name)
    nic, changed = rest(found), False
    for config in nic.get("properties", {}).get("ipConfigurations") or []:
        pools = config.get("properties", {}).get("loadBalancerBackendAddressPools") or []
        kept = [p for p in pools if p.get("id", "").lower() != pool_id.lower()]
        if len(kept) < len(pools):
            config["properties"]["loadBalancerBackendAddressPools"], changed = kept, True
    if changed:
        with azure_errors("take", f"NIC {nic_name} ({node}) out of the backend pool"):
            # The SDK's own model type, so that its serializer drops the read-only fields.
            az.network.network_interfaces.begin_create_or_update(rg, nic_name, type(found)(nic)).result()
    return changed


def strays(az: Clients, rg: str, stack: str, nodes: Collection[str]) -> list[dict]:
    """The VMs of ``rg`` (REST JSON) that carry the stack's tags and whose node, their
    ``osProfile.computerName``, is none of ``nodes``. A VM without those tags, or without a computer
    name, is left out: the deployer cannot tell it is one of its own nodes."""
    with azure_errors("list the VMs of", f"resource group {rg}"):
        vms = [rest(vm) for vm in az.compute.virtual_machines.list(rg)]
    return [vm for vm in vms if ours(vm, stack)
            and (name := vm.get("properties", {}).get("osProfile", {}).get("computerName")) and name not in nodes]


def remove(az: Clients, rg: str, vm: dict) -> str:
    """Delete the VM, then each NIC its network profile names, then its OS disk, waiting for each
    (a NIC or disk the VM's ``deleteOption`` already took answers 204: done); the sentence saying
    so. TargetError naming the resource and Azure's message when a delete fails, before the next."""
    props = vm["properties"]
    node, disk = props["osProfile"]["computerName"], props["storageProfile"]["osDisk"]["name"]
    nics = [ref["id"].rpartition("/")[2] for ref in props.get("networkProfile", {}).get("networkInterfaces") or []]
    with azure_errors("delete", f"VM {vm['name']} ({node})"):
        az.compute.virtual_machines.begin_delete(rg, vm["name"]).result()
    for nic in nics:
        with azure_errors("delete", f"NIC {nic} ({node})"):
            az.network.network_interfaces.begin_delete(rg, nic).result()
    with azure_errors("delete", f"OS disk {disk} ({node})"):
        az.compute.disks.begin_delete(rg, disk).result()
    return (f"Removed {node}, which the spec no longer has: VM {vm['name']}, NIC {', '.join(nics)} "
            f"and OS disk {disk} deleted.")
