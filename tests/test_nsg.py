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
    assert "ip daddr { 10.0.0.0/16 } tcp sport { 5000, 5001, 5432, 8008, 8404 } accept" in bridge
    assert "ip daddr { 10.0.1.0/24 } tcp sport { 2379, 2380 } accept" in bridge
    assert "198.51.100.1" not in bridge, "management is routed, not bridged"


def test_sources_resolve_to_what_nftables_holds():
    assert nsg.resolve_source(LAYOUT, "Internet") == ("not 10.0.0.0/16",)
    assert nsg.resolve_source(LAYOUT, "Management") == (f"{LAYOUT.mgmt.outer}/32",)
    assert nsg.resolve_source(LAYOUT, "Subnet") == ("10.0.1.0/24",)
    assert nsg.resolve_source(LAYOUT, "AzureLoadBalancer") == (f"{LAYOUT.lb_link.outer}/32",)
    assert nsg.resolve_source(LAYOUT, "192.0.2.0/28") == ("192.0.2.0/28",)


def _rule(comment, *exprs):
    rule = {"family": "inet", "table": nsg.TABLE, "chain": "forward", "handle": 1, "expr": list(exprs)}
    return {"rule": {**rule, "comment": comment} if comment else rule}


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
        _rule("default: outbound allowed", _match({"meta": {"key": "iifname"}}, "br0"), {"accept": None}),
    ]}
    rules = nsg.parse(json.dumps(ruleset))
    assert [(r.name, r.access, r.sources, r.ports, r.protocol) for r in rules] == [
        ("web", "allow", ("not 10.0.0.0/16",), (5000, 6000, 6001, 6002), "tcp"),
        ("ssh", "allow", ("198.51.100.1/32",), (22,), "tcp"),
        ("deny", "deny", ("0.0.0.0/0",), (), "any"),
    ]


def _ruleset(*rules):
    return json.dumps({"nftables": [{"metainfo": {"version": "1.0.6"}}, *rules]})


def test_the_read_back_of_the_live_layout_holds_exactly_the_spec_rules():
    """The structural rules render writes (conntrack, transit, outbound, ARP, bridge copies and
    replies, the fault tables) are not NSG rules; what remains is the spec's, one each."""
    rules = nsg.parse(_ruleset(*LIVE), {r.name for r in SPEC.security_rules})
    assert sorted(r.name for r in rules) == sorted(r.name for r in SPEC.security_rules)


def test_a_rule_added_by_hand_without_our_comment_is_reported_as_unmanaged():
    """Negative control: an accept for 5432 from anywhere, no comment, inserted in our chain."""
    dport = {"payload": {"protocol": "tcp", "field": "dport"}}
    extra = _rule("", _match(dport, 5432), {"accept": None})
    extra["rule"]["handle"] = 77
    rules = nsg.parse(_ruleset(*LIVE, extra), {r.name for r in SPEC.security_rules})
    (unmanaged,) = [r for r in rules if r.name.startswith("unmanaged:")]
    assert unmanaged.name == "unmanaged:inet/pgha_nsg/forward#77"
    assert (unmanaged.access, unmanaged.sources, unmanaged.ports) == ("allow", ("0.0.0.0/0",), (5432,))


def test_management_reaches_the_nodes_by_the_targets_own_rule_and_no_spec_rule_admits_it_to_a_service():
    """Issue 19, defect 8 (failed before the fix: the spec's allow-mgmt-patroni admitted 8008 from the
    admin range, which on Azure nothing routes there). The deployer reaches a node's services through
    SSH (Azure: a tunnel); the local target stands for it with one structural rule on its management
    link, not with a spec rule; a management rule edited by hand (here: from any link) is unmanaged."""
    ssh = SPEC.ports.ssh
    admitted = {p for r in SPEC.security_rules if r.source == "Management" and r.access == "allow" for p in SPEC.rule_ports(r)}
    assert admitted == {ssh}, f"spec rules admit Management to {sorted(admitted)}, SSH ({ssh}) alone is reachable on Azure"
    assert f'iifname "mgmt" oifname "br0" accept comment "{nsg.MGMT_COMMENT}"' in nsg.render(LAYOUT)
    oif = {"meta": {"key": "oifname"}}
    widened = _rule(nsg.MGMT_COMMENT, _match(oif, "br0"), {"accept": None})
    names = [r.name for r in nsg.parse(_ruleset(*LIVE, widened), {r.name for r in SPEC.security_rules})]
    assert [n for n in names if n.startswith("unmanaged:")] == ["unmanaged:inet/pgha_nsg/forward#1"], names


def test_rules_in_other_tables_and_unknown_bridge_copies_are_unmanaged():
    foreign = {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 3, "expr": [{"accept": None}]}}
    bridge = {"rule": {"family": "bridge", "table": nsg.TABLE, "chain": "forward", "handle": 9,
                       "comment": "nsg:not-in-spec:200:inbound", "expr": [{"accept": None}]}}
    names = [r.name for r in nsg.parse(_ruleset(*LIVE, foreign, bridge), {r.name for r in SPEC.security_rules})]
    assert "unmanaged:inet/filter/forward#3" in names and "unmanaged:bridge/pgha_nsg/forward#9" in names


def _live_rules() -> list[dict]:
    """The ruleset as ``nft -j`` reported it for the shipped spec on a live local stack."""
    ct = {"ct": {"key": "state"}}
    iif, oif = {"meta": {"key": "iifname"}}, {"meta": {"key": "oifname"}}
    saddr = {"payload": {"protocol": "ip", "field": "saddr"}}
    inet = [_rule(None, _match(ct, ["established", "related"], "in"), {"accept": None}),
            _rule(None, _match(ct, "invalid", "in"), {"drop": None}),
            _rule("transit: internet, lb, management", _match(iif, "br0", "!="), _match(oif, "br0", "!="),
                  {"counter": {"packets": 1, "bytes": 60}}, {"accept": None}),
            _rule(nsg.MGMT_COMMENT, _match(iif, "mgmt"), _match(oif, "br0"), {"accept": None})]
    for r in SPEC.security_rules:
        inet.append(_rule(f"nsg:{r.name}:{r.priority}:{r.direction}", _match(oif, "br0"), {"counter": {}},
                          {"accept": None} if r.access == "allow" else {"drop": None}))
    inet.append(_rule("default: outbound allowed, as on Azure", _match(iif, "br0"), {"accept": None}))
    bridge = [{"family": "bridge", "table": nsg.TABLE, "chain": "forward", "handle": 40 + i, **body}
              for i, body in enumerate([
                  {"expr": [_match({"payload": {"protocol": "ether", "field": "type"}}, "arp"), {"accept": None}]},
                  {"comment": "nsg:allow-cluster:130:inbound", "expr": [_match(saddr, "10.0.0.0/16"), {"accept": None}]},
                  {"comment": "reply:allow-cluster", "expr": [{"accept": None}]},
                  {"comment": "nsg:deny-all-inbound:4000:inbound", "expr": [{"drop": None}]}])]
    fault = [{"family": fam, "table": nsg.FAULT_TABLE, "chain": "forward", "handle": 60 + i,
              "expr": [_match({"payload": {"protocol": "ip", "field": f}}, "@isolated"), {"drop": None}]}
             for i, (fam, f) in enumerate((fam, f) for fam in ("inet", "bridge") for f in ("saddr", "daddr"))]
    return inet + [{"rule": r} for r in bridge + fault]


LIVE = _live_rules()
