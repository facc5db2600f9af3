"""The contract between the deployer, the suites and a target (``local``, ``azure``).

A target stands up the infrastructure of stage 1 (network, NSG, load balancer with an empty
backend pool, VMs), fills the pool in stage 3, injects infrastructure faults, and tears everything
down. Its read-backs report what the platform really has, never what we asked for: suites compare
them with expectations derived from the spec, so they never need to know which target runs.

Every read-back returns the plain, frozen types defined here, identical for every target.
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

from deployer.spec import StackSpec
from deployer.state import StackState

Capability = Literal["crash_vm", "isolate", "effective_rules", "vantage_internet"]


class TargetError(RuntimeError):
    """A platform operation failed; the message says what was attempted and what the platform said."""


class MissingPrerequisite(TargetError):
    """The machine or account lacks something the target needs; nothing was created."""


@dataclasses.dataclass(frozen=True)
class RuleInForce:
    """A security rule as the platform reports it.

    ``sources`` are CIDRs or platform tags exactly as the platform holds them (the target's
    ``resolve_source`` maps a spec source to the same form); ``ports`` is sorted, empty = all ports.
    ``scope`` says where the rule was read: ``"nsg"`` for the rule set itself, or a node name for the
    effective rules of that node's interface.
    """

    name: str
    priority: int
    direction: Literal["inbound", "outbound"]
    access: Literal["allow", "deny"]
    protocol: Literal["tcp", "udp", "any"]
    sources: tuple[str, ...]
    ports: tuple[int, ...]
    scope: str = "nsg"


@dataclasses.dataclass(frozen=True)
class PoolMember:
    """One member of the load balancer's backend pool, as the load balancer reports it."""

    node: str
    address: str
    healthy: bool


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """The outcome of one active TCP connection attempt ``src -> dst:port``."""

    src: str
    dst: str
    port: int
    reachable: bool
    seconds: float
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class HostAccess:
    """How the control machine reaches one node over SSH (for Ansible, testinfra, process faults)."""

    node: str
    address: str
    ssh_host: str
    ssh_port: int
    user: str
    key_file: Path
    known_hosts: Path
    proxy_jump: str | None = None

    def ssh_args(self) -> list[str]:
        """OpenSSH options shared by every SSH user: strict host keys, our key only, bounded waits."""
        args = [
            "-i", str(self.key_file), "-p", str(self.ssh_port),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
        ]
        if self.proxy_jump:
            args += ["-J", self.proxy_jump]
        return args


class Target(abc.ABC):
    """Base of every target. Subclasses register themselves by ``name`` (see ``targets.get``).

    Lifecycle: ``preflight`` -> ``provision`` (stage 1) -> [Ansible over ``hosts()``] -> ``attach``
    (stage 3) -> read-backs and faults -> ``teardown`` -> ``leftovers``. Every method may be called
    again after a partial failure: provision and attach converge, teardown finishes what exists.
    """

    name: ClassVar[str]
    #: What this target can do beyond the common contract; tests requiring more are skipped.
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    registry: ClassVar[dict[str, type[Target]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if getattr(cls, "name", None):
            Target.registry[cls.name] = cls

    def __init__(self, spec: StackSpec, state: StackState):
        self.spec = spec
        self.state = state

    # ----- stages -----

    @abc.abstractmethod
    def preflight(self) -> None:
        """Check prerequisites; raise MissingPrerequisite with one clear message, creating nothing."""

    @abc.abstractmethod
    def provision(self) -> None:
        """Stage 1: network, NSG, public frontend, load balancer with an EMPTY pool, booted VMs
        reachable over SSH. Cleans a stale stack of the same name first. Idempotent."""

    def is_up(self) -> bool:
        """True when stage 1's work is present and running, so ``up`` may resume after it."""
        return False

    def patroni_url(self, node: str) -> str:
        """Base URL of a node's Patroni REST API as reachable from the control machine."""
        return f"http://{self.spec.node(node).address}:{self.spec.ports.patroni}"

    def what_if(self) -> list[str]:
        """Readable lines describing what ``provision`` would create or change; creates nothing."""
        raise NotImplementedError(f"target {self.name} has no what-if")

    @abc.abstractmethod
    def hosts(self) -> list[HostAccess]:
        """SSH access to every node, in spec order. Valid after provision."""

    def ansible_vars(self) -> dict:
        """Target-specific Ansible variables (a difference between targets is a variable)."""
        return {}

    @abc.abstractmethod
    def attach(self) -> None:
        """Stage 3: put every node into the load balancer's backend pool. Idempotent."""

    # ----- read-backs: what the platform reports -----

    @abc.abstractmethod
    def security_rules(self) -> list[RuleInForce]:
        """The security rules in force (and, with ``effective_rules``, per node interface)."""

    @abc.abstractmethod
    def resolve_source(self, source: str) -> tuple[str, ...]:
        """A spec rule source (tag or CIDR) in the form ``security_rules`` reports it."""

    @abc.abstractmethod
    def backend_pool(self) -> list[PoolMember]:
        """The load balancer's backend pool members and their probe health, in spec node order."""

    @abc.abstractmethod
    def frontend(self) -> tuple[str, int]:
        """The load balancer frontend address and its primary (read-write) port."""

    @abc.abstractmethod
    def vantage(self, name: Literal["internet", "vnet"]) -> list[str]:
        """Command prefix that runs a program at a vantage point (``internet``: outside the VNet,
        where clients are; ``vnet``: inside the virtual network). Empty list = this process."""

    @abc.abstractmethod
    def probe(self, src: str, dst: str, port: int, timeout: float = 3.0) -> ProbeResult:
        """Actively try a TCP connection from ``src`` (``internet``, ``vnet`` or a node name)."""

    # ----- infrastructure faults; each has its heal -----

    def crash_vm(self, node: str) -> None:
        """Power the VM off without shutdown (capability ``crash_vm``); heal with ``start_vm``."""
        raise NotImplementedError(f"target {self.name} cannot crash a VM")

    def start_vm(self, node: str) -> None:
        """Start a crashed VM again."""
        raise NotImplementedError(f"target {self.name} cannot start a VM")

    def isolate(self, node: str) -> None:
        """Cut a node off the network in both directions, dropping existing flows (``isolate``)."""
        raise NotImplementedError(f"target {self.name} cannot isolate a node")

    def heal(self, node: str) -> None:
        """Undo ``isolate``; a no-op when the node is not isolated."""
        raise NotImplementedError(f"target {self.name} cannot heal a node")

    # ----- teardown -----

    @abc.abstractmethod
    def teardown(self) -> None:
        """Remove everything this stack created, also from a half-built stack. Never raises for
        something already gone."""

    @abc.abstractmethod
    def leftovers(self) -> list[str]:
        """Anything of this stack still present, one readable line each; empty after a clean teardown."""


def get(name: str) -> type[Target]:
    """The target class registered as ``name``."""
    import deployer.targets.azure  # noqa: F401  (registration)
    import deployer.targets.local  # noqa: F401

    try:
        return Target.registry[name]
    except KeyError:
        raise TargetError(f"unknown target {name!r}; known: {', '.join(sorted(Target.registry))}") from None
