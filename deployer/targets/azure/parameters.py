"""The ARM parameters of ``bicep/main.bicep``, rendered from the stack spec.

The spec is the one source of truth: the Bicep holds no address, port, rule or size of its own.
This module turns a :class:`~deployer.spec.StackSpec` into the parameter object of a deployment
(``{name: {"value": ...}}``), and the spec's security rules into the ARM shape of NSG rules,
which the Azure target also uses to compare what it asked for with what the NSG reports.
"""

from __future__ import annotations

from deployer.spec import SecurityRule, SpecError, StackSpec

#: Spec source tags that Azure knows as service tags of the same name.
AZURE_SERVICE_TAGS = ("Internet", "VirtualNetwork", "AzureLoadBalancer")
#: ARM spelling of the spec's protocols and directions.
_PROTOCOLS = {"tcp": "Tcp", "udp": "Udp", "any": "*"}
_DIRECTIONS = {"inbound": "Inbound", "outbound": "Outbound"}
_ACCESS = {"allow": "Allow", "deny": "Deny"}
#: Key types Azure accepts for Linux VMs.
_SSH_KEY_TYPES = ("ssh-rsa ", "ssh-ed25519 ")
#: Azure's limits on tags (names up to 512 characters, values up to 256).
_TAG_NAME_MAX, _TAG_VALUE_MAX = 512, 256


def resolve_source(spec: StackSpec, source: str) -> str:
    """A spec rule source as an NSG ``sourceAddressPrefix``.

    ``Internet``, ``VirtualNetwork`` and ``AzureLoadBalancer`` stay service tags, ``Any`` becomes
    ``*``, ``Subnet`` becomes ``network.subnet_cidr``, ``Management`` becomes ``azure.admin_cidr`` and
    a CIDR stays itself. Raises
    :class:`~deployer.spec.SpecError` (a ValueError) naming ``azure.admin_cidr`` when a rule needs
    the admin address range and the spec does not give it.
    """
    if source in AZURE_SERVICE_TAGS or source == "*":
        return source
    if source == "Any":
        return "*"
    if source == "Subnet":
        return str(spec.network.subnet_cidr)
    if source == "Management":
        if spec.azure.admin_cidr is None:
            raise SpecError(
                "azure.admin_cidr is not set: the rules with source Management (SSH and the Patroni "
                "API for the admin) need the address range you administer from. Set azure.admin_cidr "
                "in the spec to your public address, e.g. 198.51.100.7/32 (0.0.0.0/0 is refused)"
            )
        return str(spec.azure.admin_cidr)
    return source


def nsg_security_rule(spec: StackSpec, rule: SecurityRule) -> dict:
    """One spec rule in the ARM shape of an NSG rule: ``{"name": ..., "properties": {...}}``.

    Port names become numbers; no port means every port (``*``), one port goes into
    ``destinationPortRange`` and several into ``destinationPortRanges``, as Azure reports them back.
    """
    ports = [str(p) for p in spec.rule_ports(rule)]
    properties: dict = {
        "priority": rule.priority,
        "direction": _DIRECTIONS[rule.direction],
        "access": _ACCESS[rule.access],
        "protocol": _PROTOCOLS[rule.protocol],
        "sourceAddressPrefix": resolve_source(spec, rule.source),
        "sourcePortRange": "*",
        "destinationAddressPrefix": "*",
    }
    if len(ports) > 1:
        properties["destinationPortRanges"] = ports
    else:
        properties["destinationPortRange"] = ports[0] if ports else "*"
    return {"name": rule.name, "properties": properties}


def nsg_security_rules(spec: StackSpec) -> list[dict]:
    """Every spec security rule in the ARM shape, in spec order (see :func:`nsg_security_rule`).

    These are the NSG's only rules; the SDK target compares them with what the NSG reports.
    """
    return [nsg_security_rule(spec, rule) for rule in spec.security_rules]


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    if not tags:
        raise ValueError("tags are required: every resource carries the stack name and its expiry time")
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"tag {key!r}: names and values must be strings (got {value!r})")
        if not key or len(key) > _TAG_NAME_MAX or len(value) > _TAG_VALUE_MAX:
            raise ValueError(f"tag {key!r}: names take 1-{_TAG_NAME_MAX} characters, values up to {_TAG_VALUE_MAX}")
    return dict(tags)


def _check_ssh_key(key: str) -> str:
    key = key.strip()
    if not key.startswith(_SSH_KEY_TYPES):
        raise ValueError(
            "ssh_public_key must be an OpenSSH public key of a type Azure accepts for Linux VMs "
            f"({', '.join(t.strip() for t in _SSH_KEY_TYPES)}), one line as in id_ed25519.pub"
        )
    return key


def bicep_parameters(spec: StackSpec, *, join_pool: bool, ssh_public_key: str, tags: dict[str, str]) -> dict:
    """The parameter object of a deployment of ``bicep/main.bicep``: ``{name: {"value": ...}}``.

    ``join_pool`` is False for stage 1 (provision: the NICs carry no backend pool) and True for
    stage 3 (attach: the NICs join the pool ``nodes``). ``ssh_public_key`` is the admin user's
    OpenSSH public key (a ``@secure()`` parameter: never printed, never output). ``tags`` go on
    every resource (the stack name and its expiry time). The backup repository (a storage account
    and its private container) follows ``backup.enabled`` and ``backup.container``.

    Raises ValueError (a :class:`~deployer.spec.SpecError` for spec fields) naming what is wrong,
    e.g. ``azure.admin_cidr`` when the rules need it and it is not set.
    """
    values = {
        "stackName": spec.name,
        "location": spec.azure.location,
        "tags": _check_tags(tags),
        "vnetAddressPrefix": str(spec.network.vnet_cidr),
        "subnetAddressPrefix": str(spec.network.subnet_cidr),
        "nodes": [{"name": n.name, "privateIp": str(n.address), "zone": n.zone} for n in spec.nodes],
        "securityRules": nsg_security_rules(spec),
        "sshPort": spec.ports.ssh,
        "haproxyPrimaryPort": spec.ports.haproxy_primary,
        "haproxyReplicasPort": spec.ports.haproxy_replicas,
        "haproxyHealthPort": spec.ports.haproxy_health,
        "probeIntervalSeconds": spec.load_balancer.probe_interval_s,
        "probeThreshold": spec.load_balancer.probe_threshold,
        "probeNoHealthyBackends": spec.load_balancer.no_healthy_backends,
        "vmSize": spec.azure.vm_size,
        "adminUsername": spec.admin_user,
        "sshPublicKey": _check_ssh_key(ssh_public_key),
        "joinBackendPool": bool(join_pool),
        "backupEnabled": spec.backup.enabled,
        "backupContainer": spec.backup.container,
    }
    return {name: {"value": value} for name, value in values.items()}
