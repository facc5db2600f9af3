"""nftables rendering of the NSG and parsing of ``nft -j`` output back into RuleInForce."""

from __future__ import annotations

import json

from deployer.spec import load_spec
from deployer.targets.local import nsg
from deployer.targets.local.network import Layout

SPEC = load_spec()
LAYOUT = Layout(SPEC, "pgha")


def test_every_rule_rendered_in_priority_order_with_default_deny():
    script = nsg.render(LAYOUT)
    positions = [script.index(f'nsg:{r.name}:{r.priority}:') for r in sorted(SPEC.security_rules, key=lambda r: r.priority)]
    assert positions == sorted(positions)
    assert script.count("policy drop;") == 2
    assert 'ip saddr != 10.0.0.0/16 tcp dport { 5000, 5001 } counter accept' in script
    assert 'ip saddr { 198.51.100.1/32 } tcp dport { 22 } counter accept' in script


def test_bridge_table_is_stateless_with_replies_and_arp():
    bridge = nsg.render(LAYOUT).split("table bridge pgha_nsg {")[1]
    assert "ether type arp accept" in bridge
    assert "tcp sport { 2379, 2380, 5000, 5001, 5432, 8008, 8404 } accept" in bridge
    assert "198.51.100.1" not in bridge, "management is routed, not bridged"


def test_sources_resolve_to_what_nftables_holds():
    assert nsg.resolve_source(LAYOUT, "Internet") == ("not 10.0.0.0/16",)
    assert nsg.resolve_source(LAYOUT, "Management") == (f"{LAYOUT.mgmt.outer}/32",)
    assert nsg.resolve_source(LAYOUT, "AzureLoadBalancer") == (f"{LAYOUT.lb_link.outer}/32",)
    assert nsg.resolve_source(LAYOUT, "192.0.2.0/28") == ("192.0.2.0/28",)


def _rule(comment, *exprs):
    return {"rule": {"family": "inet", "table": nsg.TABLE, "chain": "forward", "handle": 1, "comment": comment,
                     "expr": list(exprs)}}


def _match(left, right, op="=="):
    return {"match": {"op": op, "left": left, "right": right}}


def test_parse_reads_sources_ports_and_verdict_from_expressions():
    saddr = {"payload": {"protocol": "ip", "field": "saddr"}}
    dport = {"payload": {"protocol": "tcp", "field": "dport"}}
    ruleset = {"nftables": [
        {"metainfo": {"version": "1.0.6"}},
        _rule("nsg:web:100:inbound", _match(saddr, {"prefix": {"addr": "10.0.0.0", "len": 16}}, "!="),
              _match(dport, {"set": [5000, {"range": [6000, 6002]}]}), {"counter": {}}, {"accept": None}),
        _rule("nsg:ssh:130:inbound", _match(saddr, {"set": ["198.51.100.1"]}), _match(dport, 22), {"accept": None}),
        _rule("nsg:deny:4000:inbound", {"counter": {}}, {"drop": None}),
        _rule("default: outbound allowed", {"accept": None}),
    ]}
    rules = nsg.parse(json.dumps(ruleset))
    assert [(r.name, r.access, r.sources, r.ports, r.protocol) for r in rules] == [
        ("web", "allow", ("not 10.0.0.0/16",), (5000, 6000, 6001, 6002), "tcp"),
        ("ssh", "allow", ("198.51.100.1/32",), (22,), "tcp"),
        ("deny", "deny", ("0.0.0.0/0",), (), "any"),
    ]
