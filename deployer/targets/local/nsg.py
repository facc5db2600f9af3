"""The NSG as nftables in the ``vnet`` namespace, outside the VMs.

Two tables, both default deny for traffic into the subnet:
- ``inet pgha_nsg``: routed traffic (internet, load balancer, management -> subnet); stateful.
- ``bridge pgha_nsg``: VM-to-VM traffic on the bridge. The bridge family has no conntrack here, so
  it is stateless: a rule allowing ports P from S also lets replies from ports P back to S.
Each spec rule becomes one nftables rule whose comment carries ``nsg:<name>:<priority>:<direction>``;
``parse`` reads the ruleset back from ``nft -j`` into RuleInForce, deriving sources, ports and the
verdict from the rule's expressions (what the kernel holds), not from the spec.
A third table, ``inet pgha_fault``/``bridge pgha_fault``, holds the addresses of isolated nodes.
"""

from __future__ import annotations

import ipaddress
import json

from deployer.spec import NEGATION as NOT
from deployer.spec import SecurityRule
from deployer.targets.base import RuleInForce
from deployer.targets.local.network import BRIDGE, Layout

TABLE, FAULT_TABLE = "pgha_nsg", "pgha_fault"
#: The management link inside the ``vnet`` namespace (the host's end is ``<stack>-mgmt``) and the
#: target's own rule for it: the host reaches every port of a node, as the deployer on Azure does
#: through its SSH tunnel (admitted by the spec's SSH rule, then local to the node), so no spec rule
#: admits Management to a service port (Patroni's API included) on either target.
MGMT_LINK = "mgmt"
MGMT_COMMENT = "management: every port of a node, as Azure's SSH tunnel reaches it"


def resolve_source(layout: Layout, source: str) -> tuple[str, ...]:
    """A spec source as nftables holds it: a CIDR, or ``not <vnet>`` for Internet."""
    vnet = str(layout.spec.network.vnet_cidr)
    return {
        "Any": ("0.0.0.0/0",), "*": ("0.0.0.0/0",),
        "Internet": (NOT + vnet,),
        "VirtualNetwork": (vnet,),
        "Subnet": (str(layout.spec.network.subnet_cidr),),
        "AzureLoadBalancer": (f"{layout.lb_link.outer}/32",),
        "Management": (f"{layout.mgmt.outer}/32",),
    }.get(source) or (str(ipaddress.ip_network(source)),)


def _saddr(sources: tuple[str, ...], field: str = "saddr") -> str:
    if sources == ("0.0.0.0/0",):
        return ""
    if len(sources) == 1 and sources[0].startswith(NOT):
        return f"ip {field} != {sources[0][len(NOT):]} "
    return f"ip {field} {{ {', '.join(sources)} }} "


def _l4(rule: SecurityRule, ports: list[int], field: str = "dport") -> str:
    protos = ["tcp", "udp"] if rule.protocol == "any" else [rule.protocol]
    if not ports:
        return "" if rule.protocol == "any" else f"meta l4proto {rule.protocol} "
    assert len(protos) == 1, "a rule with ports needs protocol tcp or udp"
    return f"{protos[0]} {field} {{ {', '.join(map(str, ports))} }} "


def _comment(rule: SecurityRule) -> str:
    return f'comment "nsg:{rule.name}:{rule.priority}:{rule.direction}"'


def render(layout: Layout) -> str:
    """The complete nft script (atomic: deletes and recreates both NSG tables)."""
    spec = layout.spec
    subnet = str(spec.network.subnet_cidr)
    rules = sorted(spec.security_rules, key=lambda r: (r.direction, r.priority))
    inet, bridge = [], []
    for rule in rules:
        verdict = "accept" if rule.access == "allow" else "drop"
        src = resolve_source(layout, rule.source)
        ports = spec.rule_ports(rule)
        if rule.direction == "inbound":
            inet.append(f'oifname "{BRIDGE}" ip daddr {subnet} {_saddr(src)}{_l4(rule, ports)}counter {verdict} {_comment(rule)}')
        else:
            inet.append(f'iifname "{BRIDGE}" ip saddr {subnet} {_saddr(src, "daddr")}{_l4(rule, ports)}counter {verdict} {_comment(rule)}')
        # VM-to-VM: only sources that can lie inside the subnet matter on the bridge.
        inside = [s for s in src if not s.startswith(NOT) and ipaddress.ip_network(s).overlaps(spec.network.subnet_cidr)]
        if rule.direction == "inbound" and inside:
            bridge.append(f"{_saddr(tuple(inside))}{_l4(rule, ports)}counter {verdict} {_comment(rule)}")
            if verdict == "accept" and ports:
                bridge.append(f"{_saddr(tuple(inside), 'daddr')}{_l4(rule, ports, 'sport')}accept "
                              f'comment "reply:{rule.name}"')
    return "\n".join([
        f"table inet {TABLE}", f"delete table inet {TABLE}",
        f"table bridge {TABLE}", f"delete table bridge {TABLE}",
        f"table inet {TABLE} {{",
        "  chain forward {",
        "    type filter hook forward priority filter; policy drop;",
        "    ct state established,related accept",
        "    ct state invalid drop",
        f'    iifname != "{BRIDGE}" oifname != "{BRIDGE}" accept comment "transit: internet, lb, management"',
        f'    iifname "{MGMT_LINK}" oifname "{BRIDGE}" accept comment "{MGMT_COMMENT}"',
        *(f"    {r}" for r in inet),
        f'    iifname "{BRIDGE}" accept comment "default: outbound allowed, as on Azure"',
        "  }", "}",
        f"table bridge {TABLE} {{",
        "  chain forward {",
        "    type filter hook forward priority filter; policy drop;",
        "    ether type arp accept",
        *(f"    {r}" for r in bridge),
        "  }", "}", "",
    ])


def render_fault_tables() -> str:
    """Tables holding isolated nodes: their packets are dropped before any NSG rule, flows included."""
    out = []
    for family in ("inet", "bridge"):
        out += [f"table {family} {FAULT_TABLE} {{",
                "  set isolated { type ipv4_addr; }",
                "  chain forward {",
                "    type filter hook forward priority filter - 10; policy accept;",
                "    ip saddr @isolated drop",
                "    ip daddr @isolated drop",
                "  }", "}"]
    return "\n".join(out) + "\n"


def flush_fault_tables() -> str:
    """Empty the ``isolated`` sets of existing fault tables: every isolation ends."""
    return "".join(f"flush set {family} {FAULT_TABLE} isolated\n" for family in ("inet", "bridge"))


def _match_value(right) -> list[str]:
    """An nft JSON match operand as a list of strings (addresses/prefixes/ports)."""
    if isinstance(right, dict) and "set" in right:
        return [v for item in right["set"] for v in _match_value(item)]
    if isinstance(right, dict) and "prefix" in right:
        return [f"{right['prefix']['addr']}/{right['prefix']['len']}"]
    if isinstance(right, dict) and "range" in right:
        lo, hi = right["range"]
        return [str(p) for p in range(int(lo), int(hi) + 1)]
    return [str(right)]


def _match(left: dict, right, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


_IIF, _OIF = {"meta": {"key": "iifname"}}, {"meta": {"key": "oifname"}}
_CT = {"ct": {"key": "state"}}
#: The rules ``render`` writes beside the spec's, as ``nft -j`` reports them (counters removed):
#: conntrack, transit between routed links, management, outbound, ARP, and the fault tables' set drops.
#: Every other rule in the namespace that is not a spec rule is reported as ``unmanaged``.
STRUCTURAL = [json.dumps(e, sort_keys=True) for e in (
    [_match(_CT, ["established", "related"], "in"), {"accept": None}],
    [_match(_CT, "invalid", "in"), {"drop": None}],
    [_match(_IIF, BRIDGE, "!="), _match(_OIF, BRIDGE, "!="), {"accept": None}],
    [_match(_IIF, MGMT_LINK), _match(_OIF, BRIDGE), {"accept": None}],
    [_match(_IIF, BRIDGE), {"accept": None}],
    [_match({"payload": {"protocol": "ether", "field": "type"}}, "arp"), {"accept": None}],
    *([_match({"payload": {"protocol": "ip", "field": f}}, "@isolated"), {"drop": None}] for f in ("saddr", "daddr")),
)]


def _semantics(expr: list[dict], direction: str) -> tuple[tuple[str, ...], tuple[int, ...], str, str]:
    """(sources, ports, protocol, access) of a rule, read from its expressions."""
    sources, ports, protocol, access = ["0.0.0.0/0"], [], "any", "deny"
    src_field = "saddr" if direction == "inbound" else "daddr"
    for e in expr:
        if "accept" in e:
            access = "allow"
        match = e.get("match")
        if not match:
            continue
        left = match["left"]
        payload = left.get("payload", {})
        if payload.get("protocol") == "ip" and payload.get("field") == src_field:
            values = [v if "/" in v else f"{v}/32" for v in _match_value(match["right"])]
            sources = [NOT + v for v in values] if match["op"] == "!=" else values
        elif payload.get("field") == "dport":
            protocol, ports = payload["protocol"], [int(p) for p in _match_value(match["right"])]
        elif left.get("meta", {}).get("key") == "l4proto":
            protocol = str(match["right"])
    return tuple(sorted(sources)), tuple(sorted(ports)), protocol, access


def parse(ruleset_json: str, spec_rules: set[str] = frozenset()) -> list[RuleInForce]:
    """Every rule of ``nft -j list ruleset`` (the ``vnet`` namespace's whole ruleset, every table
    and chain) as RuleInForce, except the structural ones (``STRUCTURAL``) and the bridge copies and
    replies of spec rules named in ``spec_rules``: the NSG rules of the ``inet`` table by their
    comment ``nsg:<name>:<priority>:<direction>``, anything else as ``unmanaged:<family>/<table>/
    <chain>#<handle>`` (what it admits read from its expressions), so an extra rule, whatever marks
    it, shows in the read-back."""
    rules = []
    for item in json.loads(ruleset_json).get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        expr = [e for e in rule["expr"] if "counter" not in e]
        comment = rule.get("comment", "")
        ours = rule["table"] in (TABLE, FAULT_TABLE)
        if ours and json.dumps(expr, sort_keys=True) in STRUCTURAL:
            continue
        if rule["table"] == TABLE and rule["family"] == "inet" and comment.startswith("nsg:") and comment.count(":") == 3:
            _, name, priority, direction = comment.split(":")
            sources, ports, protocol, access = _semantics(expr, direction)
            rules.append(RuleInForce(name=name, priority=int(priority), direction=direction, access=access,
                                     protocol=protocol, sources=sources, ports=ports))
            continue
        copy = comment.startswith("nsg:") and comment.split(":")[1:2] or comment.startswith("reply:") and [comment[6:]]
        if rule["table"] == TABLE and rule["family"] == "bridge" and copy and copy[0] in spec_rules:
            continue  # VM-to-VM copy of a spec rule (the probes between nodes check what it admits)
        sources, ports, protocol, access = _semantics(expr, "inbound")
        rules.append(RuleInForce(name=f"unmanaged:{rule['family']}/{rule['table']}/{rule['chain']}#{rule.get('handle')}",
                                 priority=0, direction="inbound", access=access, protocol=protocol,
                                 sources=sources, ports=ports))
    return sorted(rules, key=lambda r: (r.direction, r.priority, r.name))
