"""The local target's network: one namespace per VM, a ``vnet`` namespace with the subnet's bridge,
an ``lb`` namespace holding the load balancer's public frontend, a ``client`` namespace standing for
the internet, a ``storage`` namespace standing for the storage account's blob endpoint (Azurite), a ``neighbour`` namespace standing for another host of the virtual network (a /30 of
the vnet outside the subnet, routed through ``vnet``), and a management veth from the host into
``vnet`` (the host gets routes to the subnet, the frontend and the blob endpoint only, nothing else).

Transit links are /30s carved from ``spec.local.transit_cidr``: [0] management, [1] lb, [2] client,
[3] storage.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from pathlib import Path

from deployer.spec import Node, StackSpec
from deployer.targets.local.cmd import ok, run

BRIDGE = "br0"
#: A stack's subnet namespace is ``<stack>-vnet``; finding one names a stack.
VNET_SUFFIX = "-vnet"


@dataclasses.dataclass(frozen=True)
class Link:
    """A /30 between ``vnet`` (``inner``) and another namespace or the host (``outer``)."""

    name: str
    inner: ipaddress.IPv4Address
    outer: ipaddress.IPv4Address


class Layout:
    """Every name and address of one local stack, derived from the spec alone."""

    def __init__(self, spec: StackSpec, stack: str):
        self.spec, self.stack = spec, stack
        self.vnet, self.lb, self.client = f"{stack}{VNET_SUFFIX}", f"{stack}-lb", f"{stack}-client"
        self.mgmt_if = f"{stack}-mgmt"
        links = list(spec.local.transit_cidr.subnets(new_prefix=30))
        self.mgmt, self.lb_link, self.client_link, self.storage_link = (
            Link(name, net[2], net[1]) for name, net in zip(("mgmt", "lb", "client", "storage"), links)
        )
        self.storage = f"{stack}-storage"
        self.frontend = spec.local.frontend_address
        self.gateway = spec.network.gateway
        self.neighbour = f"{stack}-neighbour"
        net = next(n for n in reversed(list(spec.network.vnet_cidr.subnets(new_prefix=30)))
                   if not n.overlaps(spec.network.subnet_cidr))
        self.neighbour_link = Link("neighbour", net[1], net[2])

    def node_ns(self, node: Node | str) -> str:
        return f"{self.stack}-{node if isinstance(node, str) else node.name}"

    @property
    def namespaces(self) -> list[str]:
        return [self.vnet, self.lb, self.client, self.neighbour, self.storage, *(self.node_ns(n) for n in self.spec.nodes)]


def namespaces_of(stack: str, namespaces: Iterable[str], stacks: Iterable[str] = ()) -> list[str]:
    """The namespaces of ``stack`` among ``namespaces``: named ``<stack>-...``, except those of another
    stack whose name starts with ``<stack>-`` (``pg-2-vnet`` is stack ``pg-2``'s, not ``pg``'s). The
    other stacks are ``stacks`` (their state directories, say) and every one a ``-vnet`` namespace names."""
    namespaces = list(namespaces)
    others = {ns.removesuffix(VNET_SUFFIX) for ns in namespaces if ns.endswith(VNET_SUFFIX)} | set(stacks)
    longer = [o for o in others if o.startswith(f"{stack}-")]
    return [ns for ns in namespaces if ns.startswith(f"{stack}-") and not any(ns.startswith(f"{o}-") for o in longer)]


def existing_namespaces(stack: str, stacks: Iterable[str] = ()) -> list[str]:
    """The named network namespaces of ``stack`` on this host (``namespaces_of``)."""
    out = run(["ip", "netns", "list"]).stdout
    return namespaces_of(stack, [line.split()[0] for line in out.splitlines() if line.split()], stacks)


def ns_pids(ns: str) -> list[int]:
    """Processes living in network namespace ``ns``."""
    res = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in res.stdout.split()] if res.returncode == 0 else []


def _veth(inner_ns: str, inner: str, outer: str, outer_ns: str) -> None:
    run(["ip", "-n", inner_ns, "link", "add", inner, "type", "veth", "peer", "name", outer, "netns", outer_ns])


def _in(ns: str | None, *args: str) -> None:
    run(["ip", *(["-n", ns] if ns else []), *args])


def _up_link(ns: str | None, dev: str, addr: str | None = None) -> None:
    if addr:
        _in(ns, "addr", "add", addr, "dev", dev)
    _in(ns, "link", "set", dev, "up")


def create(layout: Layout) -> None:
    """Build namespaces, bridge, veths, addresses and routes. Expects none of them to exist."""
    spec = layout.spec
    prefix = spec.network.subnet_cidr.prefixlen
    for ns in layout.namespaces:
        run(["ip", "netns", "add", ns])
        _in(ns, "link", "set", "lo", "up")
    run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=layout.vnet)
    run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], netns=layout.vnet)
    if Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        run(["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"], netns=layout.vnet, check=False)
    _in(layout.vnet, "link", "add", BRIDGE, "type", "bridge")
    _up_link(layout.vnet, BRIDGE, f"{layout.gateway}/{prefix}")
    for node in spec.nodes:
        _plug(layout, node, create_ns=False)
    for link, ns in ((layout.lb_link, layout.lb), (layout.client_link, layout.client),
                     (layout.storage_link, layout.storage)):
        _link(layout, link, ns)
    _link(layout, layout.neighbour_link, layout.neighbour)
    _in(layout.lb, "addr", "add", f"{layout.frontend}/32", "dev", "lo")
    _in(layout.vnet, "route", "add", f"{layout.frontend}/32", "via", str(layout.lb_link.outer))
    # Management: the host's end of the veth gets an address and routes to our subnets only.
    run(["ip", "link", "add", layout.mgmt_if, "type", "veth", "peer", "name", "mgmt", "netns", layout.vnet])
    _up_link(layout.vnet, "mgmt", f"{layout.mgmt.inner}/30")
    _up_link(None, layout.mgmt_if, f"{layout.mgmt.outer}/30")
    for dst in (str(spec.network.subnet_cidr), f"{layout.frontend}/32"):
        _in(None, "route", "add", dst, "via", str(layout.mgmt.inner), "dev", layout.mgmt_if)
    _route_storage(layout)


def _route_storage(layout: Layout) -> None:
    """The host's route to the blob endpoint (the deployer creates the container there, as Azure's
    control plane does)."""
    _in(None, "route", "replace", f"{layout.storage_link.outer}/32", "via", str(layout.mgmt.inner), "dev", layout.mgmt_if)


def _link(layout: Layout, link: Link, ns: str) -> None:
    """A routed /30 from ``vnet`` to ``ns``, whose default route goes through ``vnet``."""
    _veth(layout.vnet, link.name, "eth0", ns)
    _up_link(layout.vnet, link.name, f"{link.inner}/30")
    _up_link(ns, "eth0", f"{link.outer}/30")
    _in(ns, "route", "add", "default", "via", str(link.inner))


def _plug(layout: Layout, node: Node, create_ns: bool) -> None:
    """The node's namespace (if ``create_ns``), its veth into the bridge, its address and route."""
    ns = layout.node_ns(node)
    if create_ns:
        run(["ip", "netns", "add", ns])
        _in(ns, "link", "set", "lo", "up")
    _veth(layout.vnet, node.name, "eth0", ns)
    _in(layout.vnet, "link", "set", node.name, "master", BRIDGE)
    _up_link(layout.vnet, node.name)
    _up_link(ns, "eth0", f"{node.address}/{layout.spec.network.subnet_cidr.prefixlen}")
    _in(ns, "route", "add", "default", "via", str(layout.gateway))


def converge(layout: Layout, existing: Iterable[str]) -> list[str]:
    """Bring a stack's network to ``layout`` in place: everything when its subnet namespace is
    absent (``create``), else only the namespaces and links of nodes (and the neighbour, the storage)
    that have none. Returns the nodes plugged in; never touches a namespace that exists (so a running VM keeps
    its link)."""
    existing = set(existing)
    if layout.vnet not in existing:
        create(layout)
        return [n.name for n in layout.spec.nodes]
    for ns, link in ((layout.neighbour, layout.neighbour_link), (layout.storage, layout.storage_link)):
        if ns not in existing:
            run(["ip", "netns", "add", ns])
            _in(ns, "link", "set", "lo", "up")
            _link(layout, link, ns)
    if layout.storage not in existing:
        _route_storage(layout)
    added = [n for n in layout.spec.nodes if layout.node_ns(n) not in existing]
    for node in added:
        _plug(layout, node, create_ns=True)
    return [n.name for n in added]


def unplug(layout: Layout, node: str) -> None:
    """Delete a node's namespace (its veth goes with it); a no-op when it is gone."""
    run(["ip", "netns", "delete", layout.node_ns(node)], check=False)


def set_node_link(layout: Layout, node: str, up: bool) -> None:
    """Bring a node's bridge port up or down (a dead VM is a black hole to its peers, as on Azure)."""
    _in(layout.vnet, "link", "set", node, "up" if up else "down")


def destroy(layout: Layout, names: list[str]) -> None:
    """Delete the given namespaces and the host's management veth; absent ones are skipped."""
    for ns in names:
        run(["ip", "netns", "delete", ns], check=False)
    if ok(["ip", "link", "show", layout.mgmt_if]):
        run(["ip", "link", "delete", layout.mgmt_if])
