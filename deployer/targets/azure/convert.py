"""Pure mappings from ARM JSON (as the REST API returns it) to the contract's types and to readable lines."""

from __future__ import annotations

import fnmatch
import ipaddress

from deployer.spec import ANY_SOURCES
from deployer.targets.base import RuleInForce

_PROTOCOLS = {"tcp": "tcp", "udp": "udp", "*": "any", "all": "any"}
_SYMBOLS = {"Create": "+", "Delete": "-", "Modify": "~", "Deploy": "!", "NoChange": "=", "Ignore": "*",
            "Unsupported": "x"}


#: What-if's documented noise: deltas that say nothing about a redeploy, (resource type, path, why).
#: A default Azure fills in is not noise: the Bicep sets it (``tests/test_bicep.py``, AZURE_DEFAULTS).
WHAT_IF_NOISE = (
    ("*", "etag", "read-only: changes with every write"),
    ("*", "properties.provisioningState", "read-only: the outcome of the last operation"),
    ("*", "properties.resourceGuid", "read-only: assigned by Azure at creation"),
    ("Microsoft.Compute/virtualMachines", "properties.storageProfile.osDisk.managedDisk.id",
     "assigned by Azure to the disk the VM creates from its image; the template cannot name it"),
    ("Microsoft.Compute/virtualMachines", "properties.storageProfile.imageReference.exactVersion",
     "read-only: the version `latest` resolved to"),
)


def prefix(value: str) -> str:
    """One address prefix in the form both scopes share: ``*``, a tag, or a CIDR with its length."""
    if value in ANY_SOURCES:  # effective rules spell "*" as 0.0.0.0/0
        return "*"
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return value


def ports(single: str | None, many: list[str] | None) -> tuple[int, ...]:
    """``80``, ``5000-5001``, ``*`` or ``0-65535`` (any of them in a list) as sorted ports; () = all."""
    found: set[int] = set()
    for item in ([single] if single else []) + list(many or []):
        if item in ("*", "0-65535"):
            return ()
        low, _, high = item.partition("-")
        found.update(range(int(low), int(high or low) + 1))
    return tuple(sorted(found))


def rule(raw: dict, scope: str) -> RuleInForce:
    """An NSG rule (``{name, properties}``) or an effective rule (flat, ``securityRules/<name>``)."""
    p = raw.get("properties", raw)
    sources = [p["sourceAddressPrefix"]] if p.get("sourceAddressPrefix") else []
    sources += p.get("sourceAddressPrefixes") or []
    return RuleInForce(
        name=raw["name"].rpartition("/")[2], priority=int(p["priority"]),
        direction=p["direction"].lower(), access=p["access"].lower(),
        protocol=_PROTOCOLS.get(p["protocol"].lower(), p["protocol"].lower()),
        sources=tuple(dict.fromkeys(prefix(s) for s in sources)) or ("*",),
        ports=ports(p.get("destinationPortRange"), p.get("destinationPortRanges")), scope=scope)


def short_id(resource_id: str) -> str:
    """``Microsoft.Network/networkSecurityGroups/pgha-nsg`` from a full resource id."""
    head, sep, tail = resource_id.rpartition("/providers/")
    return tail if sep else resource_id.rpartition("/resourceGroups/")[2] or resource_id


def _line(change: dict) -> str:
    kind = change.get("changeType", "?")
    line = f"{_SYMBOLS.get(kind, '?')} {kind} {short_id(change.get('resourceId', '?'))}"
    detail = ", ".join(_effective_paths(change)) or change.get("unsupportedReason")
    return line + (f" ({detail})" if detail else "")


def _noise(resource_type: str, path: str) -> bool:
    return any(fnmatch.fnmatchcase(resource_type, t) and path == p for t, p, _ in WHAT_IF_NOISE)


def _effective_paths(change: dict) -> list[str]:
    """The delta paths that would change something: neither ``NoEffect`` nor ``WHAT_IF_NOISE``."""
    rtype = short_id(change.get("resourceId", "")).rpartition("/")[0]
    return [d["path"] for d in change.get("delta") or []
            if d.get("propertyChangeType") != "NoEffect" and not _noise(rtype, d["path"])]


def what_if_lines(result: dict) -> list[str]:
    """One line per change of a what-if result, az-style: ``+ Create <type>/<name>`` and, for a
    modification, the changed property paths."""
    return [_line(c) for c in result.get("properties", {}).get("changes", []) or []]


def drift_lines(result: dict) -> list[str]:
    """The changes of a what-if result that a redeploy would really make: neither ``NoChange`` nor
    ``Ignore`` nor ``Unsupported`` (what-if could not analyse it; ``what_if_lines`` logs it with its
    reason), and no ``Modify`` whose every delta is ``NoEffect`` or ``WHAT_IF_NOISE``. Empty when the
    deployment is idempotent, as Azure Verified Modules prove theirs."""
    return [_line(c) for c in result.get("properties", {}).get("changes", []) or []
            if c.get("changeType") not in ("NoChange", "Ignore", "Unsupported")
            and not (c.get("changeType") == "Modify" and not _effective_paths(c))]
