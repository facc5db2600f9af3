"""The stack spec: one typed, validated model read from ``stack.yaml``.

Everything flows one way from here: Bicep parameters, the Ansible inventory and variables, the
local target's addresses and nftables rules, and every expectation the suites check. Invalid input
is refused with a message naming the field, before any resource is created.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from deployer import pg_parameters
from deployer.paths import DEFAULT_SPEC

__all__ = ["DEFAULT_SPEC", "StackSpec", "SpecError", "load_spec", "parse_spec"]

#: Source tags a rule may use instead of a CIDR; each target resolves them to what it has
#: (``Subnet``: the cluster's own subnet, ``network.subnet_cidr``; ``VirtualNetwork``: the whole vnet).
SOURCE_TAGS = ("Internet", "VirtualNetwork", "Subnet", "AzureLoadBalancer", "Management", "Any")
#: Spellings of "every address", in a spec or as a platform reports it.
ANY_SOURCES = frozenset({"*", "0.0.0.0/0", "::/0"})
#: Sources that mean "anyone on the internet".
OPEN_SOURCES = ANY_SOURCES | {"Any", "Internet"}
#: Prefix of a negated source as a platform may report it ("not 10.0.0.0/16": all but the vnet).
NEGATION = "not "
#: NSG priorities reserved for the deny rules a partition drill injects; spec rules start above.
RESERVED_PRIORITIES = range(100, 110)
#: Ports that must never be reachable from the internet.
PROTECTED_PORTS = ("ssh", "postgres", "etcd_client", "etcd_peer", "patroni")

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,14}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class SpecError(ValueError):
    """The spec is invalid; the message names each offending field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Network(Strict):
    vnet_cidr: ipaddress.IPv4Network
    subnet_cidr: ipaddress.IPv4Network

    @model_validator(mode="after")
    def _subnet_inside_vnet(self):
        if not self.subnet_cidr.subnet_of(self.vnet_cidr):
            raise ValueError(f"subnet_cidr {self.subnet_cidr} is not inside vnet_cidr {self.vnet_cidr}")
        return self

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The subnet's first host address (Azure reserves it for the gateway too)."""
        return self.subnet_cidr.network_address + 1


class Node(Strict):
    name: Name
    address: ipaddress.IPv4Address
    zone: str = "1"


class Ports(Strict):
    ssh: int = Field(22, ge=1, le=65535)
    postgres: int = Field(5432, ge=1, le=65535)
    patroni: int = Field(8008, ge=1, le=65535)
    etcd_client: int = Field(2379, ge=1, le=65535)
    etcd_peer: int = Field(2380, ge=1, le=65535)
    haproxy_primary: int = Field(5000, ge=1, le=65535)
    haproxy_replicas: int = Field(5001, ge=1, le=65535)
    haproxy_health: int = Field(8404, ge=1, le=65535)

    @model_validator(mode="after")
    def _no_clash(self):
        seen: dict[int, str] = {}
        for name, port in self.model_dump().items():
            if port in seen:
                raise ValueError(f"ports.{name} ({port}) clashes with ports.{seen[port]}")
            seen[port] = name
        return self


class SecurityRule(Strict):
    """One NSG rule. ``ports`` are names from ``ports`` (or numbers); empty means all ports."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,79}$")]
    #: ``RESERVED_PRIORITIES`` are for the deny rules a partition drill injects (targets' ``isolate``).
    priority: int = Field(ge=RESERVED_PRIORITIES.stop, le=4096)
    direction: Literal["inbound", "outbound"] = "inbound"
    access: Literal["allow", "deny"]
    protocol: Literal["tcp", "udp", "any"] = "tcp"
    source: str
    ports: list[str | int] = []

    @model_validator(mode="after")
    def _ports_need_protocol(self):
        if self.ports and self.protocol == "any":
            raise ValueError("a rule with ports needs protocol tcp or udp")
        return self

    @field_validator("source")
    @classmethod
    def _source_is_tag_or_cidr(cls, value: str) -> str:
        if value in SOURCE_TAGS or value == "*":
            return value
        try:
            ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is neither a CIDR nor one of {', '.join(SOURCE_TAGS)}") from exc
        return value


class Patroni(Strict):
    version: str = "4.1.0"
    scope: Name = "pgha"
    ttl: int = Field(30, ge=20)
    loop_wait: int = Field(10, ge=1)
    retry_timeout: int = Field(10, ge=1)
    synchronous_mode: StrictBool = False
    #: With etcd's quorum lost, the leader keeps running as primary while it can reach every member's
    #: REST API (Patroni's failsafe); without it, the leader demotes itself after retry_timeout.
    failsafe_mode: StrictBool = False
    #: Patroni's watchdog where the target provides one (capability ``watchdog``: a frozen primary's
    #: VM is reset before its key expires); targets without one run with it off.
    watchdog_mode: Literal["off", "automatic", "required"] = "required"
    #: Keep etcd's raft leader on another node than Patroni's leader (a daemon on every node hands it
    #: away): a crashed or isolated leader then never takes etcd's leader with it, whose successor
    #: would renew every lease, the dead leader's key too, so the key would outlive ttl.
    etcd_leader_elsewhere: StrictBool = True
    maximum_lag_on_failover: int = Field(1048576, ge=0)
    wal_sender_timeout_ms: int = Field(10000, ge=1000)

    @model_validator(mode="after")
    def _patroni_timing(self):
        # Patroni's own rule: loop_wait + 2 * retry_timeout <= ttl, or the lock may expire in a loop.
        if self.loop_wait + 2 * self.retry_timeout > self.ttl:
            raise ValueError(
                f"ttl ({self.ttl}) must be at least loop_wait + 2 * retry_timeout "
                f"({self.loop_wait + 2 * self.retry_timeout})"
            )
        return self


#: PostgreSQL settings ``postgres.parameters`` refuses, and where each comes from instead. Patroni
#: sets some itself, from its local configuration (which overrides the DCS) or its state
#: (``ConfigHandler.CMDLINE_OPTIONS`` and the recovery parameters in patroni/postgresql/config.py);
#: the stack depends on others; and some have their own spec field.
NOT_PARAMETERS = {
    "max_connections": "set it with postgres.max_connections",
    "wal_sender_timeout": "set it with patroni.wal_sender_timeout_ms",
    "listen_addresses": "Patroni listens on the node's address (the spec's nodes)",
    "port": "Patroni sets it from ports.postgres",
    "cluster_name": "Patroni sets it to patroni.scope",
    "hot_standby": "Patroni keeps it on",
    "wal_log_hints": "pg_rewind (Patroni's use_pg_rewind) needs it on",
    "password_encryption": "pg_hba (the patroni role) accepts scram-sha-256 passwords only",
    "synchronous_standby_names": "Patroni manages it (patroni.synchronous_mode)",
    **dict.fromkeys(("archive_mode", "archive_command", "archive_timeout", "archive_library"),
                    "the backup section sets the WAL archive (pgBackRest)"),
    "unix_socket_directories": "Patroni's local configuration sets it (the patroni role), overriding the DCS",
    **dict.fromkeys(("data_directory", "config_file", "hba_file", "ident_file"),
                    "Patroni's local configuration places the data directory and its files (the patroni role)"),
    **dict.fromkeys(("primary_conninfo", "primary_slot_name", "promote_trigger_file", "restore_command",
                     "archive_cleanup_command", "recovery_end_command", "recovery_min_apply_delay", "recovery_target",
                     "recovery_target_action", "recovery_target_inclusive", "recovery_target_lsn",
                     "recovery_target_name", "recovery_target_time", "recovery_target_timeline",
                     "recovery_target_xid"), "Patroni writes the recovery settings itself"),
}
#: Patroni's own bounds (``CMDLINE_OPTIONS``' validators), in the parameter's base unit: Patroni
#: ignores a value outside them with a warning and runs its default instead.
PATRONI_MINIMUMS = {"max_connections": 25, "max_wal_senders": 3, "max_replication_slots": 4,
                    "max_locks_per_transaction": 32, "max_worker_processes": 2, "wal_keep_size": 16}
PATRONI_WAL_LEVELS = ("replica", "logical")


class Postgres(Strict):
    """``parameters``: any other PostgreSQL setting, name -> value as in postgresql.conf (``128MB``,
    ``10s``, ``on``), applied to every member through Patroni's DCS. Each is checked against
    PostgreSQL 15's catalogue (``deployer.pg_parameters``: the name, the type, the range, the units)
    and Patroni's own rules (``NOT_PARAMETERS``, ``PATRONI_MINIMUMS``, ``wal_level``), and kept under
    the name as PostgreSQL spells it (``timezone`` -> ``TimeZone``)."""

    version: Literal[15] = 15
    #: Patroni ignores a value below ``PATRONI_MINIMUMS``' 25.
    max_connections: int = Field(100, ge=PATRONI_MINIMUMS["max_connections"])
    parameters: dict[str, StrictBool | int | float | str] = {}

    @field_validator("max_connections")
    @classmethod
    def _in_postgresqls_range(cls, value: int) -> int:
        pg_parameters.normalise("max_connections", value)
        return value

    @field_validator("parameters", mode="wrap")
    @classmethod
    def _known_to_postgresql(cls, value, handler):
        errors, out = [], {}
        for name, item in (value.items() if isinstance(value, dict) else ()):
            try:
                canonical = _check_parameter(str(name), item)
                if canonical in out:
                    raise ValueError(f"{canonical} is given twice (names are case-insensitive)")
                out[canonical] = item
            except (KeyError, ValueError) as exc:
                errors.append(InitErrorDetails(type=PydanticCustomError("parameter", "{why}", {"why": _why(exc)}),
                                               loc=(name,), input=item))
        if errors:
            raise ValidationError.from_exception_data("Postgres", errors)
        return handler(out if isinstance(value, dict) else value)


def _check_parameter(name: str, value: object) -> str:
    """``name`` as PostgreSQL spells it, if ``postgres.parameters`` may set it to ``value``."""
    p = pg_parameters.parameter(name)
    if p.name.lower() in NOT_PARAMETERS:
        raise ValueError(f"not settable here: {NOT_PARAMETERS[p.name.lower()]}")
    if not p.settable:
        raise ValueError(f"PostgreSQL does not accept it in a configuration file (context {p.context})")
    setting = pg_parameters.normalise(p.name, value)
    if p.name in PATRONI_MINIMUMS and int(setting) < PATRONI_MINIMUMS[p.name]:
        raise ValueError(f"Patroni ignores a value below {PATRONI_MINIMUMS[p.name]}{p.unit}, seen {value!r}")
    if p.name == "wal_level" and setting not in PATRONI_WAL_LEVELS:
        raise ValueError(f"replication needs {' or '.join(PATRONI_WAL_LEVELS)}, seen {value!r}")
    return p.name


def _why(exc: Exception) -> str:
    return exc.args[0] if isinstance(exc, KeyError) else str(exc)


class HAProxy(Strict):
    """How each node's HAProxy checks the servers' Patroni REST API (HAProxy's ``inter``,
    ``fastinter``, ``downinter``, ``fall``, ``rise``): every ``check_inter_ms`` while a server's state
    is settled and up; every ``check_fastinter_ms`` once a check disagrees with its state (the
    remaining ``fall`` or ``rise`` checks of a transition); every ``check_downinter_ms`` while it is
    down (the replicas in the primary listener, the leader in the replicas one), so a promoted
    replica is routed within one such interval. None: HAProxy's default, ``check_inter_ms``."""

    check_inter_ms: int = Field(1000, ge=100)
    check_fastinter_ms: int | None = Field(None, ge=50)
    check_downinter_ms: int | None = Field(None, ge=50)
    check_fall: int = Field(2, ge=1)
    check_rise: int = Field(1, ge=1)

    @property
    def fastinter_ms(self) -> int:
        return self.check_fastinter_ms or self.check_inter_ms

    @property
    def downinter_ms(self) -> int:
        return self.check_downinter_ms or self.check_inter_ms

    @property
    def down_s(self) -> float:
        """An up server's checks start failing: marked down within one ``inter``, then ``fall - 1``
        checks ``fastinter`` apart."""
        return (self.check_inter_ms + self.fastinter_ms * (self.check_fall - 1)) / 1000

    @property
    def up_s(self) -> float:
        """A down server's checks start passing: marked up within one ``downinter``, then ``rise - 1``
        checks ``fastinter`` apart."""
        return (self.downinter_ms + self.fastinter_ms * (self.check_rise - 1)) / 1000


class LoadBalancer(Strict):
    """The load balancer's probe of each member's HAProxy health endpoint (Azure's minimum interval
    is 5 s). ``no_healthy_backends`` is Azure's ``noHealthyBackendsBehavior``: where new connections
    go while every member is probed down: nowhere (``AllProbedDown``, Azure's default), or to every
    member (``AllProbedUp``), so that when a leaderless cluster has taken every member out, clients
    reach a node HAProxy as soon as it routes to the new leader instead of at the next probe."""

    probe_interval_s: int = Field(5, ge=5)
    probe_threshold: int = Field(2, ge=1)
    no_healthy_backends: Literal["AllProbedDown", "AllProbedUp"] = "AllProbedDown"


class Local(Strict):
    """Addresses only the local target uses: the transit links between its namespaces."""

    transit_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("198.51.100.0/24")
    frontend_address: ipaddress.IPv4Address = ipaddress.IPv4Address("203.0.113.10")
    min_free_disk_gib: float = Field(4, ge=0)

    @field_validator("transit_cidr")
    @classmethod
    def _room_for_links(cls, value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if value.prefixlen > 28:
            raise ValueError(f"{value} is too small: four /30 links need at least a /28")
        return value


class Azure(Strict):
    location: str = "westeurope"
    vm_size: str = "Standard_B2s"
    admin_cidr: ipaddress.IPv4Network | None = None
    subscription_allow_list: list[str] = []
    expiry_hours: int = Field(8, ge=1, le=168)

    @field_validator("admin_cidr")
    @classmethod
    def _not_everyone(cls, value):
        if value is not None and value.prefixlen == 0:
            raise ValueError("0.0.0.0/0 would open SSH to the internet; give your own address range")
        return value


class Backup(Strict):
    """pgBackRest's continuous WAL archive and backups, in one repository: a private container of
    Azure Blob Storage (Azurite, Microsoft's emulator, on the local target; ``Target.backup_repository``).

    Every node's timer fires every ``check_every_min`` minutes; on the leader only, it takes a full
    backup when the repository's newest full one is ``full_every_h`` hours old (or there is none),
    else a differential one when its newest backup of any kind is ``diff_every_h`` hours old: the
    schedule follows the leader across failovers. ``retention_full`` full backups are kept (and
    the WAL they need), ``retention_diff`` differential ones. ``archive_timeout_s`` forces a WAL
    segment switch at least that often while anything is written, so ``rpo_s`` (the promise: the
    writes a lost cluster may lose, in seconds) must allow for it and for the archiving itself;
    ``rto_s`` is the promise for how long a restore takes until writes resume."""

    enabled: StrictBool = True
    #: Azure's container names: 3-63 lower-case letters, digits and single hyphens, starting and
    #: ending with a letter or digit.
    container: Annotated[str, Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", min_length=3, max_length=63)] = "pgbackrest"
    retention_full: int = Field(2, ge=1, le=100)
    retention_diff: int = Field(7, ge=1, le=365)
    full_every_h: int = Field(168, ge=1)
    diff_every_h: int = Field(24, ge=1)
    check_every_min: int = Field(15, ge=1, le=1440)
    archive_timeout_s: int = Field(60, ge=10, le=3600)
    rpo_s: int = Field(120, ge=10)
    #: The promise for a whole-cluster restore: seconds from the loss to the first acknowledged write
    #: (it grows with the database; ``make bench-restore`` measures the restore's throughput).
    rto_s: int = Field(600, ge=30)

    @model_validator(mode="after")
    def _promises_hold(self):
        if self.diff_every_h > self.full_every_h:
            raise ValueError(f"diff_every_h ({self.diff_every_h}) must not exceed full_every_h ({self.full_every_h})")
        if self.rpo_s < self.archive_timeout_s + ARCHIVE_PUSH_MARGIN_S:
            raise ValueError(f"rpo_s ({self.rpo_s}) cannot be kept: a segment may wait archive_timeout_s "
                             f"({self.archive_timeout_s}) plus {ARCHIVE_PUSH_MARGIN_S} s to reach the repository")
        return self

    @property
    def full_max_age_s(self) -> int:
        """The oldest the newest full backup may be while the schedule runs: its period plus one
        timer period (the leader's timer notices it due at the next firing)."""
        return self.full_every_h * 3600 + self.check_every_min * 60

    @property
    def archive_max_age_s(self) -> int:
        """The longest a written WAL segment may wait for the repository: ``archive_timeout_s`` plus
        the push's margin."""
        return self.archive_timeout_s + ARCHIVE_PUSH_MARGIN_S


#: The archive command the pgbackrest role installs: pgBackRest's archive-push, but for a segment of an
#: abandoned older timeline the archive already holds otherwise (its module docstring says why).
ARCHIVE_PUSH = "/usr/local/bin/pgbackrest-archive-push"
#: Seconds allowed, beyond ``archive_timeout``, for a finished WAL segment to reach the repository
#: (the archiver's next attempt, the push itself over HTTPS).
ARCHIVE_PUSH_MARGIN_S = 30


class Workload(Strict):
    """The drills' load: ``writes_per_s`` through the frontend for the whole run (reads on top),
    ``steady_s`` of it before each fault, spread over ``workers`` Locust worker processes under one
    master (0: a single local process)."""

    writes_per_s: float = Field(50, gt=0, le=2000)
    steady_s: float = Field(30, ge=1)
    workers: int = Field(2, ge=0, le=16)


class StackSpec(Strict):
    #: Which variant of the stack this is (a profile file sets it; see ``load_spec``'s ``extends``).
    profile: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")] = "default"
    name: Name = "pgha"
    admin_user: Name = "pgadmin"
    network: Network
    nodes: list[Node]
    ports: Ports = Ports()
    security_rules: list[SecurityRule]
    patroni: Patroni = Patroni()
    postgres: Postgres = Postgres()
    haproxy: HAProxy = HAProxy()
    load_balancer: LoadBalancer = LoadBalancer()
    local: Local = Local()
    azure: Azure = Azure()
    workload: Workload = Workload()
    backup: Backup = Backup()

    @field_validator("nodes")
    @classmethod
    def _odd_quorum(cls, nodes: list[Node]) -> list[Node]:
        if len(nodes) < 3 or len(nodes) % 2 == 0:
            raise ValueError(f"needs an odd number of nodes, at least 3, for an etcd quorum (got {len(nodes)})")
        for label, values in (("name", [n.name for n in nodes]), ("address", [n.address for n in nodes])):
            dupes = sorted({str(v) for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate node {label}: {', '.join(dupes)}")
        return nodes

    @model_validator(mode="after")
    def _consistent(self):
        errors = []
        subnet = self.network.subnet_cidr
        reserved = {subnet.network_address + i for i in range(4)} | {subnet.broadcast_address}
        for i, node in enumerate(self.nodes):
            if node.address not in subnet:
                errors.append(f"nodes.{i}.address: {node.address} is not inside network.subnet_cidr {subnet}")
            elif node.address in reserved:
                errors.append(f"nodes.{i}.address: {node.address} is reserved (first four and last addresses)")
        known = set(Ports.model_fields)
        priorities: dict[tuple[str, int], str] = {}
        for i, rule in enumerate(self.security_rules):
            unknown = [p for p in rule.ports if isinstance(p, str) and p not in known]
            if unknown:
                errors.append(f"security_rules.{i}.ports: unknown port name {unknown[0]!r}")
                continue
            key = (rule.direction, rule.priority)
            if key in priorities:
                errors.append(f"security_rules.{i}.priority: {rule.priority} is already used by {priorities[key]}")
            priorities[key] = rule.name
            if rule.direction == "inbound" and rule.access == "allow" and admits_internet(rule.source):
                opened = sorted(self._protected_in(rule))
                if opened:
                    errors.append(
                        f"security_rules.{i} ({rule.name}): opens {', '.join(opened)} to {rule.source!r}; "
                        "allow them from VirtualNetwork, Management or a CIDR instead"
                    )
        for net, field in ((self.local.transit_cidr, "local.transit_cidr"),):
            if net.overlaps(self.network.vnet_cidr):
                errors.append(f"{field}: {net} overlaps network.vnet_cidr {self.network.vnet_cidr}")
        if self.local.frontend_address in self.network.vnet_cidr or self.local.frontend_address in self.local.transit_cidr:
            errors.append(f"local.frontend_address: {self.local.frontend_address} must be outside the vnet and transit ranges")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def _protected_in(self, rule: SecurityRule) -> set[str]:
        numbers = self.rule_ports(rule)
        return {name for name in PROTECTED_PORTS if not numbers or getattr(self.ports, name) in numbers}

    # ----- derived values every consumer shares -----

    def rule_ports(self, rule: SecurityRule) -> list[int]:
        """A rule's ports as numbers, sorted; empty means every port."""
        return sorted({p if isinstance(p, int) else getattr(self.ports, p) for p in rule.ports})

    def admits(self, source_tag: str, address: str, port: int) -> bool:
        """The spec's verdict on inbound TCP ``port`` from ``address`` (a host the targets know as
        ``source_tag``, e.g. ``VirtualNetwork`` for any host of the network): the first matching rule
        by priority decides, nothing matching means deny."""
        for rule in sorted((r for r in self.security_rules if r.direction == "inbound"), key=lambda r: r.priority):
            ports = self.rule_ports(rule)
            if ports and port not in ports:
                continue
            network = self.network.subnet_cidr if rule.source == "Subnet" else (
                None if rule.source in SOURCE_TAGS else ipaddress.ip_network(rule.source))
            if rule.source in ("Any", "*", source_tag) or (network and ipaddress.ip_address(address) in network):
                return rule.access == "allow"
        return False

    def postgres_settings(self) -> dict[str, str]:
        """Every PostgreSQL setting the spec sets, by name as PostgreSQL spells it, with the value
        ``pg_settings.setting`` reports once it is applied (``pg_parameters.normalise``: a number in
        the parameter's base unit, without it, where ``SHOW`` would say ``10s``; booleans ``on``/``off``): ``max_connections``,
        ``wal_sender_timeout`` (from ``patroni.wal_sender_timeout_ms``), with ``backup.enabled``
        the WAL archive (``archive_mode``, ``archive_command`` pushing to pgBackRest's stanza (``ARCHIVE_PUSH``),
        ``archive_timeout``), and ``postgres.parameters``.
        The one source of what reaches Patroni's DCS (``deployer.inventory``) and of what the suites
        expect to be running; ``pg_parameters.needs_restart(name)`` says which need a restart."""
        archive = {"archive_mode": "on", "archive_command": f"{ARCHIVE_PUSH} {self.stanza} %p",
                   "archive_timeout": self.backup.archive_timeout_s} if self.backup.enabled else {}
        given = {"max_connections": self.postgres.max_connections,
                 "wal_sender_timeout": self.patroni.wal_sender_timeout_ms, **archive, **self.postgres.parameters}
        return {name: pg_parameters.normalise(name, value) for name, value in given.items()}

    @property
    def stanza(self) -> str:
        """pgBackRest's name for the cluster in its repository: Patroni's scope."""
        return self.patroni.scope

    def node(self, name: str) -> Node:
        """The node called ``name``; KeyError naming the known nodes otherwise."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r} in the spec (nodes: {', '.join(n.name for n in self.nodes)})")


#: A CIDR shorter than this admits most of the internet (a /7 is 1/128 of every address).
MIN_PRIVATE_PREFIX = 8


def admits_internet(source: str) -> bool:
    """True when a source, as a spec or a platform spells it, admits addresses on the internet: an
    "anyone" tag or spelling, a negation ("all but ..."), or a CIDR shorter than /8."""
    if source in OPEN_SOURCES or source.startswith(NEGATION):
        return True
    try:
        return ipaddress.ip_network(source, strict=False).prefixlen < MIN_PRIVATE_PREFIX
    except ValueError:
        return False


#: Admin user names Azure refuses for Linux VMs.
AZURE_RESERVED_USERS = frozenset({
    "administrator", "admin", "user", "user1", "test", "user2", "test1", "user3", "admin1", "1", "123", "a",
    "actuser", "adm", "admin2", "aspnet", "backup", "console", "david", "guest", "john", "owner", "root", "server",
    "sql", "support", "support_388945a0", "sys", "test2", "test3", "user4", "user5"})


def check_for_target(spec: StackSpec, target: str) -> StackSpec:
    """The fields only one target reads, checked when that target is chosen (before anything is
    created); SpecError naming each offending field."""
    if target != "azure":
        return spec
    errors = [f"nodes.{i}.zone: {n.zone!r} is not an Azure availability zone (1, 2 or 3)"
              for i, n in enumerate(spec.nodes) if n.zone not in ("1", "2", "3")]
    if not re.fullmatch(r"[a-z][a-z0-9]{2,39}", spec.azure.location):
        errors.append(f"azure.location: {spec.azure.location!r} is not an Azure region name (e.g. westeurope)")
    if not re.fullmatch(r"(Standard|Basic)_[A-Za-z0-9_]+", spec.azure.vm_size):
        errors.append(f"azure.vm_size: {spec.azure.vm_size!r} is not an Azure VM size (e.g. Standard_B2s)")
    if spec.admin_user in AZURE_RESERVED_USERS:
        errors.append(f"admin_user: Azure refuses {spec.admin_user!r} as an administrator name")
    if errors:
        raise SpecError("the spec is invalid for target azure:\n" + "\n".join(f"  {e}" for e in errors))
    return spec


def check_stack_name(name: str) -> str:
    """A stack name as given on the command line, refused (SpecError) before anything is created
    unless it is a spec ``Name``: lower-case letters, digits and '-', starting with a letter."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise SpecError(f"stack name {name!r} is invalid: use 1-15 lower-case letters, digits and '-', "
                        "starting with a letter")
    return name


def load_spec(path: str | Path | None = None) -> StackSpec:
    """Read and validate a spec file; SpecError lists every bad field by its dotted path.

    A profile is a spec file with ``extends: <spec file>`` (relative to itself): its mappings are
    merged key by key over that file's, anything else (lists included) replaces; chains are allowed.
    """
    return parse_spec(_read(Path(path) if path else DEFAULT_SPEC, ()), source=str(path or DEFAULT_SPEC))


def _read(path: Path, seen: tuple[Path, ...]) -> object:
    if path.resolve() in seen:
        raise SpecError(f"spec file {path} extends itself through {' -> '.join(map(str, seen))}")
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise SpecError(f"spec file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"spec file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or "extends" not in raw:
        return raw
    base = _read(path.parent / str(raw.pop("extends")), (*seen, path.resolve()))
    if not isinstance(base, dict):
        raise SpecError(f"{path}: the spec it extends is not a mapping")
    return _merged(base, raw)


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_spec(raw: object, source: str = "<spec>") -> StackSpec:
    """Validate an already-parsed mapping (see load_spec)."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: the top level must be a mapping")
    try:
        return StackSpec.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"  {where}: {msg}")
        raise SpecError(f"{source} is invalid:\n" + "\n".join(lines)) from None
