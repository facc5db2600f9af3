"""What the subscription must offer before anything is created, asked with read-only GETs.

The VMs use encryption at host (``bicep/modules/vm.bicep``): the subscription needs the feature
``Microsoft.Compute/EncryptionAtHost`` registered. The VM size must be offered in the region and in
every zone a node uses (``locationInfo[].zones``), restricted in none of them, support encryption at
host, and boot ``IMAGE`` (its Hyper-V generation and CPU architecture). ARM refuses each only deep
inside a nested deployment (``SkuNotAvailable``, ``InvalidParameter``), after the network and the
load balancer exist; preflight says it first.
"""

from __future__ import annotations

from deployer.spec import StackSpec
from deployer.targets.azure.clients import Clients, rest
from deployer.targets.azure.errors import azure_errors

FEATURE = "Microsoft.Compute/EncryptionAtHost"
#: The VMs' image (``vm.bicep``'s default ``imageReference``), and what a size needs to boot it.
IMAGE = {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2"}
IMAGE_GENERATION, IMAGE_ARCHITECTURE = "V2", "x64"
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
    image = " ".join(IMAGE.values())
    generations = capabilities.get("HyperVGenerations") or IMAGE_GENERATION
    if IMAGE_GENERATION not in generations.split(","):
        problems.append(f"VM size {size} runs Hyper-V generation(s) {generations}, not {IMAGE_GENERATION} of the "
                        f"image {image}: pick a size whose HyperVGenerations include {IMAGE_GENERATION}")
    if (arch := capabilities.get("CpuArchitectureType") or IMAGE_ARCHITECTURE) != IMAGE_ARCHITECTURE:
        problems.append(f"VM size {size} is {arch}, not {IMAGE_ARCHITECTURE} of the image {image}: pick an "
                        f"{IMAGE_ARCHITECTURE} size")
    zones = sorted({n.zone for n in spec.nodes})
    offered = sorted({z for info in sku.get("locationInfo") or [] if info.get("location", "").lower() == location.lower()
                      for z in info.get("zones") or []})
    if missing := [z for z in zones if z not in offered]:
        problems.append(f"VM size {size} is not offered in {location} zone(s) {', '.join(missing)} (offered in "
                        f"{', '.join(offered) or 'none'}), where nodes run (nodes[].zone): pick another size, "
                        "zones or region")
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
