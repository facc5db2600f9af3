"""Infrastructure faults through the SDK: isolation as NSG deny rules, a crash as a power-off.

Isolating a node adds two deny rules (inbound to, outbound from its private address) at the lowest
free priorities of ``spec.RESERVED_PRIORITIES`` per direction, before every spec rule, and writes the
NSG with ``flushConnection`` on, so established flows are cut too. Healing removes exactly those
two. Both rewrite the whole rule list of the NSG (a PUT), keeping every other rule as read, and
both refuse to write when the rules read lack one of the spec's (``expected``): such a PUT would
delete it, SSH and the cluster's own traffic included.
"""

from __future__ import annotations

from deployer.spec import RESERVED_PRIORITIES
from deployer.targets.azure.clients import Clients, rest
from deployer.targets.azure.errors import azure_errors
from deployer.targets.base import TargetError


def isolation_names(node: str) -> tuple[str, str]:
    return f"pgha-isolate-{node}-in", f"pgha-isolate-{node}-out"


def read(az: Clients, rg: str, name: str, expected: list[str], what: str) -> tuple[dict, list[dict]]:
    """The NSG and its own rules in the shape a PUT takes (read-only ``provisioningState`` dropped);
    TargetError, before anything is written, when a rule named in ``expected`` is not among them."""
    with azure_errors("read", f"NSG {name}"):
        nsg = rest(az.network.network_security_groups.get(rg, name))
    rules = [{"name": r["name"], "properties": {k: v for k, v in r["properties"].items() if k != "provisioningState"}}
             for r in nsg.get("properties", {}).get("securityRules") or []]
    if missing := [n for n in expected if n not in {r["name"] for r in rules}]:
        raise TargetError(f"refusing to {what}: NSG {name} as read lacks the spec's rules {', '.join(missing)} "
                          f"({len(rules)} rule(s) read), and writing it back would delete them; redeploy the "
                          "stack (`deployer up --from provision`) to restore them")
    return nsg, rules


def write(az: Clients, rg: str, nsg: dict, rules: list[dict], what: str) -> None:
    body = {"location": nsg["location"], "tags": nsg.get("tags") or {},
            "properties": {"securityRules": rules, "flushConnection": True}}
    with azure_errors(what, f"NSG {nsg['name']}"):
        az.network.network_security_groups.begin_create_or_update(rg, nsg["name"], body).result()


def isolate(az: Clients, rg: str, nsg_name: str, node: str, address: str, expected: list[str]) -> bool:
    """Add the node's two deny rules; False (nothing written) when both are there already."""
    nsg, rules = read(az, rg, nsg_name, expected, f"isolate {node}")
    names = isolation_names(node)
    if {r["name"] for r in rules} >= set(names):
        return False
    new = []
    for name, direction in zip(names, ("Inbound", "Outbound")):
        taken = {r["properties"]["priority"] for r in rules + new if r["properties"]["direction"] == direction}
        free = [p for p in RESERVED_PRIORITIES if p not in taken]
        if not free:
            raise TargetError(f"cannot isolate {node}: NSG {nsg_name} has no free {direction.lower()} "
                              f"priority in {RESERVED_PRIORITIES.start}-{RESERVED_PRIORITIES.stop - 1}")
        inbound = direction == "Inbound"
        new.append({"name": name, "properties": {
            "description": f"pgha fault: isolate {node}", "protocol": "*", "access": "Deny",
            "direction": direction, "priority": free[0], "sourcePortRange": "*", "destinationPortRange": "*",
            "sourceAddressPrefix": "*" if inbound else address,
            "destinationAddressPrefix": address if inbound else "*"}})
    write(az, rg, nsg, [r for r in rules if r["name"] not in names] + new, f"isolate {node} in")
    return True


def heal(az: Clients, rg: str, nsg_name: str, node: str, expected: list[str]) -> bool:
    """Remove exactly the node's deny rules; False (nothing written) when there are none."""
    nsg, rules = read(az, rg, nsg_name, expected, f"heal {node}")
    kept = [r for r in rules if r["name"] not in isolation_names(node)]
    if len(kept) == len(rules):
        return False
    write(az, rg, nsg, kept, f"heal {node} in")
    return True


def power_off(az: Clients, rg: str, vm: str, node: str) -> None:
    """Power the VM off without a guest shutdown (``skip_shutdown``): every process dies at once."""
    with azure_errors("power off", f"VM {vm} ({node})"):
        az.compute.virtual_machines.begin_power_off(rg, vm, skip_shutdown=True).result()


def start(az: Clients, rg: str, vm: str, node: str) -> None:
    with azure_errors("start", f"VM {vm} ({node})"):
        az.compute.virtual_machines.begin_start(rg, vm).result()
