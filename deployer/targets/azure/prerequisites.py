"""What the subscription must offer before anything is created, asked with read-only GETs.

The VMs use encryption at host (``bicep/modules/vm.bicep``): the subscription needs the feature
``Microsoft.Compute/EncryptionAtHost`` registered, and the VM size must support it, be offered in
the region and not be restricted in a zone a node uses. ARM refuses each only deep inside a
nested deployment, after the network and load balancer exist; preflight says it first.
"""

from __future__ import annotations

from deployer.spec import StackSpec
from deployer.targets.azure.clients import Clients, rest
from deployer.targets.azure.errors import azure_errors

FEATURE = "Microsoft.Compute/EncryptionAtHost"
FEATURES_API = "2021-07-01"
REGISTER = ("az feature register --namespace Microsoft.Compute --name EncryptionAtHost, wait until `az feature "
            "show` says Registered, then az provider register --namespace Microsoft.Compute")


def _feature_problems(az: Clients) -> list[str]:
    namespace, _, name = FEATURE.partition("/")
    feature_id = (f"/subscriptions/{az.subscription_id}/providers/Microsoft.Features/providers/{namespace}"
                  f"/features/{name}")
    with azure_errors("read the subscription feature", FEATURE):
        state = rest(az.resources.resources.get_by_id(feature_id, api_version=FEATURES_API)).get(
            "properties", {}).get("state")
    if state == "Registered":
        return []
    return [f"the subscription feature {FEATURE} is {state or 'unknown'}, and the VMs use encryption at host: "
            f"{REGISTER}"]


def _vm_size_problems(az: Clients, spec: StackSpec) -> list[str]:
    size, location = spec.azure.vm_size, spec.azure.location
    with azure_errors("list the VM sizes of", f"location {location}"):
        skus = [rest(s) for s in az.compute.resource_skus.list(filter=f"location eq '{location}'")]
    sku = next((s for s in skus if s.get("resourceType") == "virtualMachines"
                and s.get("name", "").lower() == size.lower()), None)
    if sku is None:
        return [f"VM size {size} (azure.vm_size) is not offered in {location} (azure.location)"]
    problems = []
    capabilities = {c.get("name"): c.get("value") for c in sku.get("capabilities") or []}
    if capabilities.get("EncryptionAtHostSupported") != "True":
        problems.append(f"VM size {size} does not support encryption at host, which the VMs use: pick a size "
                        "whose EncryptionAtHostSupported capability is True (az vm list-skus)")
    zones = sorted({n.zone for n in spec.nodes})
    for restriction in sku.get("restrictions") or []:
        info = restriction.get("restrictionInfo") or {}
        blocked = sorted(set(info.get("zones") or []) & set(zones)) if restriction.get("type") == "Zone" else zones
        if blocked:
            problems.append(f"VM size {size} is restricted in {location} zone(s) {', '.join(blocked)} "
                            f"({restriction.get('reasonCode')}), where nodes run: pick another size or zones")
    return problems


def problems(az: Clients, spec: StackSpec) -> list[str]:
    """Every problem found, one sentence each naming the fix; empty when the subscription is ready."""
    return _feature_problems(az) + _vm_size_problems(az, spec)
