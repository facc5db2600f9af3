"""The contract between the deployer, the suites and a target (``local``, ``azure``).

A target stands up the infrastructure of stage 1 (network, NSG, load balancer with an empty
backend pool, VMs), fills the pool in stage 3, injects infrastructure faults, and tears everything
down. Its read-backs report what the platform really has, never what we asked for: suites compare
them with expectations derived from the spec (``deployer.targets.contract``), so they never need
to know which target runs.

Promises every target keeps (each method below states its own):

- **Errors.** A platform operation that fails raises ``TargetError`` naming what was attempted and
  what the platform said; a missing prerequisite raises ``MissingPrerequisite`` before anything is
  created; an unknown node name raises ``TargetError`` listing the known ones.
- **Convergence.** ``provision``, ``attach`` and ``teardown`` may be called again after a partial
  failure or an interrupt: they converge, they never duplicate.
- **Types.** Read-backs return the plain frozen types of this module, identical for every target.
- **Faults.** Each infrastructure fault has its heal (``crash_vm``/``start_vm``, ``isolate``/``heal``);
  both halves are idempotent, and a provision that rebuilds or redeploys the stack ends every fault.
  The nodes currently isolated or stopped are recorded in the state (``state.data``), so a second
  process (``deployer status``, a suite) sees them too, and in the fault journal
  (``deployer.journal``), so a run that dies leaves them healable by the next one.
- **Capabilities** are derived, not declared: a target has ``crash_vm`` when it implements
  ``crash_vm`` and ``start_vm``, ``isolate`` when it implements ``isolate`` and ``heal``. A test
  needing one says ``@pytest.mark.needs("crash_vm")`` and is skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from typing import ClassVar, Literal

from deployer import journal
from deployer.budgets import Budgets
from deployer.netprobe import tcp
from deployer.pki import StackPKI
from deployer.spec import StackSpec
from deployer.state import StackState
from deployer.targets.access import HostAccess
from deployer.wait import wait_until

Capability = Literal["crash_vm", "isolate", "lb_counters", "watchdog", "neighbour"]
#: Each capability and the methods a target must implement to have it.
CAPABILITIES: dict[Capability, tuple[str, ...]] = {"crash_vm": ("crash_vm", "start_vm"), "isolate": ("isolate", "heal"),
                                                   "lb_counters": ("lb_connections",), "watchdog": ("watchdog_device",),
                                                   "neighbour": ("neighbour_vantage",)}
#: Probe sources every target accepts besides a node name (see ``Target.probe``).
VANTAGES = ("management", "internet", "vnet")
#: How long a (re)started VM may take until its sshd answers.
SSH_BOOT_DEADLINE_S = 120

__all__ = ["BackupRepository", "HostAccess", "MissingPrerequisite", "PoolMember", "ProbeResult", "RuleInForce", "Target", "TargetError"]


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
    """The outcome of one active TCP connection attempt ``src -> dst:port``; ``detail`` says why it
    failed (``timed out``: filtered, ``Connection refused``: nothing listens) or how it passed."""

    src: str
    dst: str
    port: int
    reachable: bool
    seconds: float
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class BackupRepository:
    """Where pgBackRest's repository lives (an Azure Blob Storage container, or the local target's
    emulator of one, Azurite) as the nodes reach it. Every node's pgBackRest configuration is the
    same on both targets apart from these fields (the ``pgbackrest`` role renders them).

    - ``host``, ``port``: the blob endpoint the nodes connect to over HTTPS, whose certificate names
      ``host``. ``uri_style``: ``host`` (the host names the account, Azure's
      ``<account>.blob.core.windows.net``) or ``path`` (the URL's first segment names it, as an
      emulator serves it).
    - ``account``, ``container``: the storage account and the private container holding the
      repository; ``key``: the account's shared key (a secret: never printed or logged, hidden from
      ``repr``).
    - ``ca_file``: on a node, the CA bundle that verifies the endpoint (``""``: the system's store).
    - ``address``: where the nodes find ``host`` without DNS (``""``: DNS resolves it).
    """

    host: str
    port: int
    uri_style: Literal["host", "path"]
    account: str
    container: str
    key: str = dataclasses.field(repr=False)
    ca_file: str = ""
    address: str = ""

    @property
    def url(self) -> str:
        """The account's blob service URL: ``https://<address or host>:<port>``, then ``/<account>``
        in ``path`` style."""
        return f"https://{self.address or self.host}:{self.port}" + (f"/{self.account}" if self.uri_style == "path" else "")


class Target(abc.ABC):
    """Base of every target; ``deployer.targets.get(name)`` finds the class.

    Lifecycle: ``preflight`` -> ``provision`` (stage 1) -> [Ansible over ``hosts()``] -> ``attach``
    (stage 3) -> read-backs and faults -> ``teardown`` -> ``leftovers``.
    """

    name: ClassVar[str]
    #: Derived from the methods the class implements (see ``CAPABILITIES``); never set by hand.
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.capabilities = frozenset(cap for cap, methods in CAPABILITIES.items()
                                     if all(getattr(cls, m) is not getattr(Target, m) for m in methods))

    def __init__(self, spec: StackSpec, state: StackState):
        self.spec = spec
        self.state = state
        #: The stack's CA and node certificates on the control machine (``deployer.pki``).
        self.pki = StackPKI(state.dir, spec.name)

    # ----- TLS -----

    def tls_names(self) -> list[str]:
        """The load balancer frontend's names clients may connect to (its address, and its DNS
        name where the target has one): every node certificate holds them, because behind the TCP
        passthrough the node's PostgreSQL answers the client's TLS handshake. Known after provision."""
        return [self.frontend()[0]]

    @property
    def ca_file(self) -> str:
        """The CA bundle every client on the control machine verifies the stack's servers against."""
        return str(self.pki.trust)

    def ensure_certificates(self) -> list[str]:
        """Create the CA and every node's certificate where missing or outdated (``StackPKI.ensure``,
        with the spec's nodes and ``tls_names``); the nodes issued a new one."""
        return self.pki.ensure([(n.name, str(n.address)) for n in self.spec.nodes], self.tls_names())

    def renew_endpoint_certificates(self) -> None:
        """Re-issue from the current CA the certificates of endpoints the target itself serves with
        the stack's PKI, and serve them (``rotate-certs`` calls it once the nodes trust the new CA,
        before the old one is dropped). A no-op where the platform's endpoints carry their own
        certificates (Azure's storage)."""

    # ----- stages -----

    @abc.abstractmethod
    def preflight(self) -> None:
        """Check every prerequisite of this machine and account, creating nothing and sending nothing
        that changes the platform. Raises one ``MissingPrerequisite`` listing every problem found."""

    @abc.abstractmethod
    def provision(self) -> None:
        """Stage 1: network, NSG (the spec's rules, default deny), public frontend, load balancer
        with its probes and rules but an EMPTY backend pool, booted VMs. Returns once every node's
        sshd answers through ``hosts()``. A stale stack of the same name (left by a run that died)
        is cleaned or converged first; every fault in force ends. Idempotent."""

    @abc.abstractmethod
    def is_up(self) -> bool:
        """True when stage 1's work is present and every VM runs, so ``up`` may keep it. Creates
        nothing; False (never an exception) when the stack is absent."""

    def what_if(self) -> list[str]:
        """Readable lines describing what ``provision`` would create or change; creates nothing.
        Targets without a preview raise ``TargetError`` saying so."""
        raise TargetError(f"target {self.name} has no what-if preview")

    @abc.abstractmethod
    def hosts(self) -> list[HostAccess]:
        """SSH access to every node, in spec order, with host keys already trusted (recorded at
        provision). Valid after provision; ``TargetError`` before."""

    @abc.abstractmethod
    def ansible_vars(self) -> dict:
        """Target-specific Ansible variables: every difference between targets the roles see is one
        of these (``deployer.inventory`` refuses anything no role declares)."""

    @abc.abstractmethod
    def attach(self) -> None:
        """Stage 3: put every node into the load balancer's backend pool. Returns once the load
        balancer reports every node as a healthy member (``wait_pool_healthy``). Idempotent; never
        takes out a member that is there."""

    def detach(self, node: str) -> None:
        """Day two's scale in: take ``node`` out of the load balancer's backend pool (new clients stop
        reaching it; established flows end), before the node leaves the cluster. Idempotent. Targets
        that cannot yet raise ``TargetError`` saying so, before anything changed."""
        raise TargetError(f"target {self.name} cannot take a node out of the load balancer's pool (scale in)")

    # ----- read-backs: what the platform reports -----

    #: Worst-case seconds one ``backend_pool()`` call takes; waits on the pool allow for it.
    readback_latency_s: ClassVar[float] = 1.0

    @abc.abstractmethod
    def security_rules(self) -> list[RuleInForce]:
        """The security rules in force: the NSG's own (scope ``nsg``) and, where the platform
        evaluates per interface, each node's effective rules (scope = node name)."""

    @abc.abstractmethod
    def resolve_source(self, source: str) -> tuple[str, ...]:
        """A spec rule source (tag or CIDR) in the form ``security_rules`` reports it."""

    @abc.abstractmethod
    def backend_pool(self) -> list[PoolMember]:
        """The load balancer's backend pool members and their probe health, in spec node order
        (members that are no spec node after them). Empty before attach."""

    def watchdog_device(self) -> str:
        """Capability ``watchdog``: the device the VMs give Patroni (``spec.patroni.watchdog_mode``
        applies): a VM whose Patroni stops pinging it is reset before the leader key expires, so a
        frozen primary cannot outlive its lease. Only where a watchdog's reset hits that VM alone
        (never containers sharing a host's kernel)."""
        raise NotImplementedError

    def lb_connections(self) -> dict[str, int]:
        """Capability ``lb_counters``: for each backend pool member (node name), the connections the
        load balancer itself has sent to it since the load balancer started, as its own counters
        report them (never counted by us, never read on the nodes). Counters only grow while the
        load balancer runs; a member never sent one shows 0. Suites compare two readings
        (``contract.check_spread``). Targets whose load balancer keeps no per-member connection
        counter lack the capability and raise ``TargetError``: Azure's Standard Load Balancer is one
        (it does not terminate flows; its metrics count SYN packets, bytes and packets per frontend
        IP, port and direction, and only SNAT metrics and probe health carry a backend address)."""
        raise TargetError(f"target {self.name} cannot read per-member connection counters of its load balancer")

    @abc.abstractmethod
    def frontend(self) -> tuple[str, int]:
        """The load balancer frontend address and its primary (read-write) port."""

    @abc.abstractmethod
    def vantage(self) -> list[str]:
        """Command prefix that runs a program where clients are, outside the virtual network (the
        ``internet`` vantage): ``[]`` when that is this machine."""

    def neighbour_vantage(self) -> tuple[str, list[str]]:
        """Capability ``neighbour``: a host of the virtual network that is none of the cluster's nodes
        (another subnet of the same network), holding no credential of the stack: where anyone inside
        the network stands. Its address, and the command prefix that runs a program there. The NSG
        treats it as any host of the network (source ``VirtualNetwork``, not ``Subnet``)."""
        raise NotImplementedError

    def patroni_url(self, node: str) -> str:
        """Base URL of a node's Patroni REST API (HTTPS: verify against ``ca_file``) as reachable
        from the control machine. When the node is down the URL still answers fast (refused), never
        hangs."""
        return f"https://{self.address_of(node)}:{self.spec.ports.patroni}"

    # ----- backups -----

    def backup_repository(self) -> BackupRepository:
        """Where pgBackRest's repository lives and how the nodes reach it (``BackupRepository``).
        Stage 1 creates it (an empty private container, reachable from the cluster's subnet only,
        never from the ``internet`` vantage) and the key, stored mode 0600 in the state directory
        like the other secrets. Valid after provision; ``TargetError`` before, or where the target
        has no repository."""
        raise TargetError(f"target {self.name} has no backup repository")

    def repository_access(self, reader: Target, node: str) -> contextlib.AbstractContextManager[BackupRepository]:
        """A context manager: for its block, node ``node`` of another stack (``reader``, a stack of
        the same target) reaches this stack's repository as the ``BackupRepository`` it yields
        describes (host, port, ``ca_file`` and ``address`` valid on that node); everything opened
        for it is closed and removed on exit, also on error. For a read (``restore --into``):
        pgBackRest there never writes to it. Local: an SSH reverse forward from the node through
        the control machine's management link; Azure: a network rule admitting the reader's subnet.
        TargetError where the target has no repository or the reader is of another target."""
        raise TargetError(f"target {self.name} cannot open its backup repository to another stack")

    # ----- probes -----

    def probe(self, src: str, dst: str, port: int, timeout: float = 3.0) -> ProbeResult:
        """Actively try one TCP connection to ``dst`` (an address, or a node name = its address).

        ``src`` is where the attempt starts:
        - ``management``: the control machine itself (this process); how SSH and Patroni are reached;
        - ``internet``: where clients are, outside the virtual network (``vantage()``);
        - ``vnet``: inside the virtual network, from the first node in spec order that is not
          ``dst`` and neither isolated nor stopped;
        - a node name: from that node.
        Returns within about ``timeout`` (plus the cost of reaching the vantage). ``TargetError``
        when the vantage itself fails (not when the connection does: that is the result)."""
        address = self.address_of(dst) if dst in {n.name for n in self.spec.nodes} else dst
        if src == "management":
            found = tcp(address, port, timeout)
        elif src == "internet":
            found = self._probe_from_internet(address, port, timeout)
        elif src == "vnet":
            found = self._probe_from_node(self.vnet_node(avoid=dst), address, port, timeout)
        elif src in {n.name for n in self.spec.nodes}:
            found = self._probe_from_node(src, address, port, timeout)
        else:
            raise TargetError(f"unknown probe source {src!r}: one of {', '.join(VANTAGES)} or a node name")
        return ProbeResult(src=src, dst=dst, port=port, reachable=found["reachable"],
                           seconds=round(found["seconds"], 3), detail=found["detail"])

    @abc.abstractmethod
    def _probe_from_internet(self, address: str, port: int, timeout: float) -> dict:
        """``netprobe.tcp``'s answer (reachable, seconds, detail) from the internet vantage."""

    @abc.abstractmethod
    def _probe_from_node(self, node: str, address: str, port: int, timeout: float) -> dict:
        """``netprobe.tcp``'s answer from inside ``node``."""

    # ----- infrastructure faults; each has its heal -----

    def crash_vm(self, node: str) -> None:
        """Power the VM off without shutdown: every process dies at once, the disk stays, peers see
        a black hole (no resets). Returns once the VM is down. Idempotent."""
        raise TargetError(f"target {self.name} cannot crash a VM")

    def start_vm(self, node: str) -> None:
        """Start a crashed VM on its own disk; returns once its sshd answers. A no-op on a running VM."""
        raise TargetError(f"target {self.name} cannot start a VM")

    def isolate(self, node: str) -> None:
        """Drop every packet to and from the node, established flows included, before any NSG rule
        (the load balancer's probes of it fail too). Returns once in force. Idempotent."""
        raise TargetError(f"target {self.name} cannot isolate a node")

    def heal(self, node: str) -> None:
        """Undo ``isolate``: the NSG's rules apply to the node again. A no-op (writing nothing) when
        the node is not isolated."""
        raise TargetError(f"target {self.name} cannot heal a node")

    # ----- teardown -----

    @abc.abstractmethod
    def teardown(self) -> None:
        """Remove everything this stack created, also from a half-built stack or one whose state was
        lost. Never raises for something already gone."""

    @abc.abstractmethod
    def leftovers(self) -> list[str]:
        """Anything of this stack still present, one readable line each; empty after a clean teardown."""

    # ----- shared plumbing -----

    def address_of(self, node: str) -> str:
        """The node's private address; ``TargetError`` for a name the spec does not have."""
        try:
            return str(self.spec.node(node).address)
        except KeyError as exc:
            raise TargetError(exc.args[0]) from None

    def host(self, node: str) -> HostAccess:
        """``hosts()``'s entry for ``node``."""
        self.address_of(node)
        return next(h for h in self.hosts() if h.node == node)

    def faulted(self, kind: Literal["isolated", "stopped"]) -> list[str]:
        """The nodes currently isolated or stopped by this target, as recorded in the state."""
        return list(self.state.data.get(kind, []))

    #: Each infrastructure fault's mark: (what it is, its heal, what the heal does) for the journal.
    _MARKS = {"isolated": ("{node} isolated", "target.heal", "reconnected it"),
              "stopped": ("VM {node} crashed", "target.start_vm", "started it again")}

    def _mark(self, kind: Literal["isolated", "stopped"], node: str, on: bool) -> None:
        """Record (``on``) or clear a fault in force on ``node``: in ``faulted(kind)`` and as the
        fault journal's entry ``"<kind>:<node>"`` (``deployer.journal``), with its heal."""
        nodes = [n for n in self.faulted(kind) if n != node] + ([node] if on else [])
        self.state.data[kind] = nodes
        what, heal, healed = self._MARKS[kind]
        if on:
            journal.record(self.state, what.format(node=node), heal=[[heal, node]], healed=healed, node=node,
                           key=f"{kind}:{node}")
        else:
            journal.remove(self.state, key=f"{kind}:{node}")
        self.state.save()

    def vnet_node(self, avoid: str = "") -> str:
        """The node the ``vnet`` vantage probes from: the first neither ``avoid`` nor faulted."""
        down = set(self.faulted("isolated")) | set(self.faulted("stopped"))
        for node in self.spec.nodes:
            if node.name not in down and avoid not in (node.name, str(node.address)):
                return node.name
        raise TargetError("no node can probe from inside the virtual network: every other node is isolated or stopped")

    @property
    def budgets(self) -> Budgets:
        """The spec's budgets, with this target's read-back latency."""
        return Budgets(self.spec, self.readback_latency_s)

    def wait_pool_healthy(self) -> list[PoolMember]:
        """Block until the backend pool holds exactly the spec's nodes, all healthy; the pool."""
        expected = [(n.name, True) for n in self.spec.nodes]
        return wait_until(f"backend pool members {expected} (node, healthy)", self.backend_pool,
                          lambda pool: [(m.node, m.healthy) for m in pool] == expected,
                          timeout=self.budgets.lb_settle_s)

    def wait_for_ssh(self, node: str, timeout: float = SSH_BOOT_DEADLINE_S) -> None:
        """Block until the node's sshd accepts TCP connections from the control machine."""
        host = self.host(node)
        wait_until(f"SSH on {node} ({host.ssh_host}:{host.ssh_port}) to answer from the control machine",
                   lambda: tcp(host.ssh_host, host.ssh_port, 1)["reachable"], timeout=timeout, interval=0.5)
