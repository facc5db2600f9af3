"""What Azure reports, mapped to the contract's types: the rules in force, the backend pool with its
probe health, and whether the VMs run. Read-only: nothing here writes to Azure.

The per-NIC effective rules and the per-rule probe health are long-running operations of 5-20 s
each on Azure: they run concurrently (``_each``), so one read-back costs one of them, which is what
``AzureTarget.readback_latency_s`` declares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from azure.core.exceptions import ResourceNotFoundError

from deployer.spec import StackSpec
from deployer.targets.azure import convert
from deployer.targets.azure.clients import Clients, rest
from deployer.targets.azure.errors import azure_errors
from deployer.targets.base import PoolMember, RuleInForce


def nic_of(resource_id: str) -> str:
    """The NIC name in an ip configuration id (``.../networkInterfaces/<nic>/ipConfigurations/...``)."""
    parts = resource_id.split("/")
    lowered = [p.lower() for p in parts]
    return parts[lowered.index("networkinterfaces") + 1] if "networkinterfaces" in lowered else resource_id


T = TypeVar("T")
R = TypeVar("R")


def _each(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``fn`` of every item, all at once, results in item order (the first error raised)."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(fn, items))


def _sorted(rules) -> list[RuleInForce]:
    return sorted(rules, key=lambda r: (r.direction, r.priority))


def security_rules(az: Clients, rg: str, outputs: dict) -> list[RuleInForce]:
    """The NSG's own rules (scope ``nsg``; Azure's default rules left out, they are the same for every
    NSG), then each node's effective rules as Azure evaluates them for its NIC (scope = the node;
    default rules included, since they are in force there). Effective rules need the VM running."""
    nsg_name = outputs["nsgName"]
    with azure_errors("read", f"NSG {nsg_name}"):
        nsg = rest(az.network.network_security_groups.get(rg, nsg_name))

    def effective(node: dict) -> list[RuleInForce]:
        with azure_errors("read the effective rules of", f"NIC {node['nicName']} ({node['name']})"):
            result = rest(az.network.network_interfaces.begin_list_effective_network_security_groups(
                rg, node["nicName"]).result())
        return _sorted(convert.rule(r, node["name"]) for group in result.get("value") or []
                       for r in group.get("effectiveSecurityRules") or [])

    own = _sorted(convert.rule(r, "nsg") for r in nsg.get("properties", {}).get("securityRules") or [])
    return own + [r for rules in _each(effective, outputs["nodes"]) for r in rules]


def _pool(az: Clients, rg: str, outputs: dict, *, missing_ok: bool = False) -> dict:
    """The backend pool's properties as the load balancer reports them; ``{}`` for a pool (or load
    balancer) that does not exist when ``missing_ok``, TargetError otherwise."""
    lb, name = outputs["loadBalancerName"], outputs["backendPoolName"]
    with azure_errors("read", f"backend pool {name} of load balancer {lb}"):
        try:
            return rest(az.network.load_balancer_backend_address_pools.get(rg, lb, name)).get("properties", {})
        except ResourceNotFoundError:
            if missing_ok:
                return {}
            raise


def pool_joined(az: Clients, rg: str, outputs: dict) -> bool:
    """True when any NIC is in the backend pool (attach ran); False when none is, or there is no pool."""
    return bool(_pool(az, rg, outputs, missing_ok=True).get("backendIPConfigurations"))


def backend_pool(az: Clients, rg: str, outputs: dict, spec: StackSpec) -> list[PoolMember]:
    """The pool's NIC ip configurations (read-only ``backendIPConfigurations``), mapped to nodes by NIC
    name, healthy when ``Up`` in the health of every load-balancing rule the pool serves
    (``load_balancing_rules.begin_health``); the address is the one the health report gives. Spec
    order; a NIC of no node is listed after them under its NIC name. No health read before attach."""
    net, lb = az.network, outputs["loadBalancerName"]
    pool = _pool(az, rg, outputs)
    nics = [nic_of(c["id"]) for c in pool.get("backendIPConfigurations") or []]
    if not nics:
        return []

    def health(ref: dict) -> dict:
        rule = ref["id"].rpartition("/")[2]
        with azure_errors("read the probe health of", f"rule {rule} of load balancer {lb}"):
            return rest(net.load_balancer_load_balancing_rules.begin_health(rg, lb, rule).result())

    up: dict[str, bool] = {}
    address: dict[str, str] = {}
    for report in _each(health, pool.get("loadBalancingRules") or []):
        for entry in report.get("loadBalancerBackendAddresses") or []:
            nic = nic_of(entry.get("networkInterfaceIPConfigurationId", "")).lower()
            up[nic] = up.get(nic, True) and entry.get("state") == "Up"
            address[nic] = entry.get("ipAddress") or address.get(nic, "")
    by_nic = {n["nicName"].lower(): n for n in outputs["nodes"]}
    order = {node.name: i for i, node in enumerate(spec.nodes)}
    members = [PoolMember(node=by_nic.get(nic.lower(), {}).get("name", nic),
                          address=address.get(nic.lower()) or by_nic.get(nic.lower(), {}).get("privateIp", ""),
                          healthy=up.get(nic.lower(), False)) for nic in nics]
    return sorted(members, key=lambda m: (order.get(m.node, len(order)), m.node))


def vm_running(az: Clients, rg: str, vm: str) -> bool:
    """True when the VM's instance view says ``PowerState/running``; False when it does not exist."""
    with azure_errors("read the instance view of", f"VM {vm}"):
        try:
            view = rest(az.compute.virtual_machines.instance_view(rg, vm))
        except ResourceNotFoundError:
            return False
    return "PowerState/running" in {st.get("code") for st in view.get("statuses") or []}
