"""Offline structural checks of ``bicep/`` and of the parameters the deployer gives it.

There is no Bicep CLI and no Azure here: the Bicep is parsed with pycep-parser into a JSON tree and
the checks read that tree. pycep writes an identifier (a parameter, a variable) as a bare string,
a function call or operator as a dict, and a ``for`` expression as ``{loop_type, condition,
config}``; the helpers below walk that shape. The parameters are rendered from the real
``stack.yaml`` with an admin CIDR filled in, and compared with the spec field by field, written out
here again rather than through the code under test.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from pathlib import Path

import pytest
import yaml

from deployer.paths import BICEP_DIR as BICEP
from deployer.spec import DEFAULT_SPEC, OPEN_SOURCES, parse_spec

pycep = pytest.importorskip("pycep", reason="pycep-parser is a dev dependency: pip install -e '.[dev]'")
from deployer.targets.azure.parameters import bicep_parameters, nsg_security_rules  # noqa: E402
from deployer.targets.azure.prerequisites import IMAGE  # noqa: E402

MAIN = BICEP / "main.bicep"
MODULES = BICEP / "modules"
FILES = sorted(BICEP.rglob("*.bicep"))

ADMIN_CIDR = "203.0.113.7/32"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGVleGFtcGxlZXhhbXBsZWV4YW1wbGU pgha-test"
TAGS = {"stack": "pgha", "expires": "2030-01-01T00:00:00Z"}

NSG = "Microsoft.Network/networkSecurityGroups"
VNET = "Microsoft.Network/virtualNetworks"
NAT = "Microsoft.Network/natGateways"
PIP = "Microsoft.Network/publicIPAddresses"
LB = "Microsoft.Network/loadBalancers"
NIC = "Microsoft.Network/networkInterfaces"
VM = "Microsoft.Compute/virtualMachines"
DISK = "Microsoft.Compute/disks"
TAGS_RESOURCE = "Microsoft.Resources/tags"
STORAGE = "Microsoft.Storage/storageAccounts"
BLOB_SERVICE = f"{STORAGE}/blobServices"
CONTAINER = f"{BLOB_SERVICE}/containers"
#: Resource types that take no tags (their type data declares none, as ``tests/azure/test_bicep_types.py``
#: checks): the storage account's children, deleted with it.
UNTAGGABLE = {BLOB_SERVICE, CONTAINER}

#: Ports that no inbound allow rule may open to the internet: SSH, PostgreSQL, etcd, Patroni.
PROTECTED_PORTS = (22, 5432, 2379, 2380, 8008)


# ---------------------------------------------------------------- reading the parsed Bicep


@functools.cache
def parse(path: Path) -> dict:
    """The pycep JSON tree of one Bicep file."""
    return pycep.BicepParser().parse(file_path=path)


def body(config: dict) -> dict:
    """A declaration's body: that of each iteration of a loop, or the one deployed under a condition
    (pycep writes ``= if (c) {...}`` as ``{condition, config}``)."""
    while "loop_type" in config or "condition" in config:
        config = config["config"]
    return config


def resources(path: Path | None = None) -> list[tuple[Path, str, dict]]:
    """``(file, symbol, resource)`` of every resource (of one file, or of all)."""
    return [(f, sym, res) for f in ([path] if path else FILES)
            for sym, res in parse(f).get("resources", {}).items()]


def of_type(rtype: str) -> list[dict]:
    """The bodies (``config``) of every resource of one type; a loop's body for a looped resource."""
    return [body(res["config"]) for _, _, res in resources() if res["type"] == rtype]


def walk(node):
    """Every node of a tree: dicts, lists and scalars."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def dicts_with(tree, key: str) -> list[dict]:
    """Every dict in ``tree`` that has ``key``."""
    return [n for n in walk(tree) if isinstance(n, dict) and key in n]


def references(tree) -> set[str]:
    """Every identifier a value tree may refer to, interpolations included (conservative: a
    literal string's words count too). pycep's own labels (``"type": "property_accessor"``) are not."""
    if isinstance(tree, str):
        return set(re.findall(r"[A-Za-z_]\w*", tree))
    if isinstance(tree, list):
        return set().union(*(references(v) for v in tree))
    if isinstance(tree, dict):
        return set().union(*(references(v) for k, v in tree.items() if k != "type"))
    return set()


def decorators(element: dict) -> dict[str, object]:
    return {d["type"]: d.get("argument") for d in element.get("decorators", [])}


def is_secure(param: dict) -> bool:
    return "secure" in decorators(param)


def loop_body(value) -> dict:
    assert isinstance(value, dict) and "loop_type" in value, f"expected a for expression, got {value!r}"
    return value["config"]


def module_decls(path: Path) -> list[tuple[str, Path, dict]]:
    """``(symbol, module file, params)`` of every module a file declares."""
    out = []
    for sym, mod in parse(path).get("modules", {}).items():
        out.append((sym, (path.parent / mod["detail"]["path"]).resolve(), body(mod["config"]).get("params", {})))
    return out


class Unevaluable(Exception):
    pass


def evaluate(expr, env: dict):
    """Evaluate the plain part of a Bicep expression: identifiers from ``env``, literals,
    arrays, objects and the ``cond ? a : b`` operator. Anything else raises Unevaluable."""
    if isinstance(expr, str):
        return env.get(expr, expr)
    if isinstance(expr, list):
        return [evaluate(e, env) for e in expr]
    if isinstance(expr, dict):
        if "operator" in expr:
            op = expr["operator"]
            if op["type"] != "conditional":
                raise Unevaluable(op["type"])
            operands = op["operands"]
            condition = evaluate(operands["condition"], env)
            if not isinstance(condition, bool):
                raise Unevaluable(f"condition {operands['condition']!r} is not a known bool")
            return evaluate(operands["true_value" if condition else "false_value"], env)
        if "function" in expr or "loop_type" in expr:
            raise Unevaluable(str(expr)[:80])
        return {k: evaluate(v, env) for k, v in expr.items()}
    return expr


# ---------------------------------------------------------------- NSG rule evaluation


def _ports(props: dict) -> set[int] | None:
    """Destination ports of an ARM rule; None means every port."""
    ranges = props.get("destinationPortRanges") or [props.get("destinationPortRange", "*")]
    ports: set[int] = set()
    for item in ranges:
        item = str(item)
        if item == "*":
            return None
        low, _, high = item.partition("-")
        ports.update(range(int(low), int(high or low) + 1))
    return ports


def opened_to_internet(rules: list[dict]) -> list[str]:
    """Every (rule, port) of inbound allow rules that opens a protected port to anyone."""
    bad = []
    for rule in rules:
        props = rule["properties"]
        if str(props.get("direction")).lower() != "inbound" or str(props.get("access")).lower() != "allow":
            continue
        sources = props.get("sourceAddressPrefixes") or [props.get("sourceAddressPrefix")]
        if not any(str(s) in OPEN_SOURCES for s in sources):
            continue
        ports = _ports(props)
        bad += [f"{rule.get('name')}: {p}" for p in PROTECTED_PORTS if ports is None or p in ports]
    return bad


def literal_rules() -> list[dict]:
    """Security rules written as literals anywhere in the Bicep (there should be none)."""
    keys = ("sourceAddressPrefix", "sourceAddressPrefixes", "destinationPortRange", "destinationPortRanges")
    found = []
    for f in FILES:
        for node in walk(parse(f)):
            if isinstance(node, dict) and any(k in node for k in keys):
                found.append({"name": f"{f.name}", "properties": node})
    return found


# ---------------------------------------------------------------- the spec and its parameters


def raw_spec() -> dict:
    return yaml.safe_load(DEFAULT_SPEC.read_text())


@pytest.fixture(scope="module")
def spec():
    """The real stack.yaml, with the admin CIDR a user must give."""
    raw = raw_spec()
    raw["azure"]["admin_cidr"] = ADMIN_CIDR
    return parse_spec(raw)


@pytest.fixture(scope="module")
def params(spec) -> dict:
    return bicep_parameters(spec, join_pool=False, ssh_public_key=SSH_KEY, tags=TAGS)


# ================================================================ tests


def test_every_bicep_file_parses():
    assert MAIN in FILES and len(FILES) >= 6, [f.name for f in FILES]
    for f in FILES:
        assert parse(f), f"{f} parsed to nothing"


def test_every_resource_type_is_present():
    present = {res["type"] for _, _, res in resources()}
    expected = {NSG, VNET, NAT, PIP, LB, NIC, VM}
    assert expected <= present, f"missing: {sorted(expected - present)}"


def param_mismatch(declared: dict, passed) -> tuple[list[str], list[str]]:
    """(params passed but not declared, required params not passed), both sorted."""
    required = {n for n, p in declared.items() if p.get("default") is None}
    return sorted(set(passed) - set(declared)), sorted(required - set(passed))


def test_main_uses_every_module_and_passes_valid_params():
    used = set()
    for f in FILES:
        for sym, target, passed in module_decls(f):
            assert target.exists(), f"{f.name}: module {sym} points at missing {target}"
            used.add(target)
            unknown, missing = param_mismatch(parse(target)["parameters"], passed)
            assert not unknown, f"{f.name}: module {sym} passes unknown params {unknown}"
            assert not missing, f"{f.name}: module {sym} lacks required params {missing}"
    assert {m.resolve() for m in MODULES.glob("*.bicep")} == used


def _root(expr) -> str | None:
    """The symbol an accessor chain starts from: ``vms`` in ``vms[i].outputs.name``."""
    while isinstance(expr, dict) and "operator" in expr and expr["operator"]["type"] in ("property_accessor", "index_accessor"):
        expr = expr["operator"]["operands"]["operand_1"]
    return expr if isinstance(expr, str) else None


def _output_name(expr) -> str | None:
    """``name`` in ``<module>.outputs.name`` or ``<module>.outputs.name[i]``."""
    ops = expr["operator"]["operands"]
    rest = ops["operand_2"]
    if isinstance(rest, dict) and rest.get("operator", {}).get("type") == "property_accessor":
        inner = rest["operator"]["operands"]
        if inner["operand_1"] == "outputs":
            return _root(inner["operand_2"])
    return None


def test_every_accessed_symbol_and_module_output_exists():
    """What the Bicep CLI would catch first: an accessor or interpolation rooted in an undeclared
    symbol, or a module output that the module does not declare."""
    for f in FILES:
        tree = parse(f)
        modules = {sym: target for sym, target, _ in module_decls(f)}
        declared = set(tree.get("parameters", {})) | set(tree.get("variables", {})) | \
            set(tree.get("resources", {})) | set(modules)
        for node in walk(tree):
            if isinstance(node, dict) and "loop_type" in node:
                detail = node["loop_type"]["detail"]
                declared |= {detail.get("item_name"), detail.get("index_name")} - {None}

        def check(node):
            if isinstance(node, str):
                for name in re.findall(r"\$\{\s*([A-Za-z_]\w*)(?!\w|\s*\()", node):
                    assert name in declared, f"{f.name}: interpolation uses undeclared {name!r} in {node!r}"
            elif isinstance(node, list):
                for item in node:
                    check(item)
            elif isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
                # pycep nests ``a.b.c`` to the right: operand_2 is the property path, not symbols.
                root = _root(node)
                if root is not None:
                    assert root in declared, f"{f.name}: {root!r} is not declared"
                    if root in modules and (out := _output_name(node)):
                        assert out in parse(modules[root]).get("outputs", {}), \
                            f"{f.name}: module {root} has no output {out!r}"
                check(node["operator"]["operands"]["operand_1"])
            elif isinstance(node, dict):
                for key, value in node.items():
                    if key not in ("type", "decorators"):
                        check(value)

        check(tree)


def test_every_param_is_described_required_or_optional():
    for f in FILES:
        for name, param in parse(f)["parameters"].items():
            text = decorators(param).get("description")
            assert isinstance(text, str), f"{f.name}: param {name} has no @description"
            has_default = param.get("default") is not None
            prefix = "Optional. " if has_default else "Required. "
            assert text.startswith(prefix), f"{f.name}: param {name} description must start with {prefix!r}: {text!r}"


def test_every_output_is_described():
    for f in FILES:
        for name, output in parse(f).get("outputs", {}).items():
            assert decorators(output).get("description"), f"{f.name}: output {name} has no @description"


def test_every_module_outputs_resource_id_and_name():
    for f in MODULES.glob("*.bicep"):
        outputs = parse(f).get("outputs", {})
        assert {"resourceId", "name"} <= set(outputs), f"{f.name} outputs {sorted(outputs)}"
        assert outputs["resourceId"]["type"] == outputs["name"]["type"] == "string"


def test_main_outputs_are_the_contract_with_the_azure_target():
    outputs = parse(MAIN)["outputs"]
    assert set(outputs) == {"nodes", "frontendIp", "frontendFqdn", "loadBalancerName", "backendPoolName", "nsgName",
                            "vnetName", "backupAccountName", "backupBlobHost"}
    assert outputs["nodes"]["type"] == "array"
    node = loop_body(outputs["nodes"]["value"])
    assert set(node) == {"name", "privateIp", "nicName", "vmName", "sshPort"}
    for name in ("frontendIp", "frontendFqdn", "loadBalancerName", "backendPoolName", "nsgName", "vnetName",
                 "backupAccountName", "backupBlobHost"):
        assert outputs[name]["type"] == "string", name


def test_every_resource_is_tagged_from_the_tags_param():
    for f, sym, res in resources():
        if res["existing"] or res["type"] in UNTAGGABLE:
            continue
        config = body(res["config"])
        tags = config["properties"].get("tags") if res["type"] == TAGS_RESOURCE else config.get("tags")
        assert tags == "tags", f"{f.name}: resource {sym} is not tagged with the tags param"
        assert "tags" in parse(f)["parameters"], f"{f.name} has no tags param"
    for f in FILES:
        for sym, _, passed in module_decls(f):
            assert passed.get("tags") == "tags", f"{f.name}: module {sym} does not get the tags"


# ---------------------------------------------------------------- secrets


def test_secure_params_are_never_output_nor_defaulted():
    secure_seen = 0
    for f in FILES:
        tree = parse(f)
        secure = {n for n, p in tree["parameters"].items() if is_secure(p)}
        secure_seen += len(secure)
        for name in secure:
            assert tree["parameters"][name].get("default") is None, f"{f.name}: secure param {name} has a default"
        for out_name, output in tree.get("outputs", {}).items():
            leaked = secure & references(output["value"])
            assert not leaked, f"{f.name}: output {out_name} refers to secure params {sorted(leaked)}"
    assert secure_seen >= 2, "the SSH public key must be @secure() in main.bicep and in the VM module"
    assert is_secure(parse(MAIN)["parameters"]["sshPublicKey"])


def test_secure_values_only_go_into_secure_module_params():
    for f in FILES:
        secure = {n for n, p in parse(f)["parameters"].items() if is_secure(p)}
        for sym, target, passed in module_decls(f):
            declared = parse(target)["parameters"]
            for name, value in passed.items():
                if secure & references(value):
                    assert is_secure(declared[name]), f"{f.name}: module {sym} param {name} gets a secret but is not @secure()"


def test_no_password_anywhere():
    for f in FILES:
        assert not dicts_with(parse(f), "adminPassword"), f"{f.name} sets an adminPassword"


# ---------------------------------------------------------------- NSG


def test_nsg_rules_come_only_from_the_parameter():
    (nsg,) = of_type(NSG)
    assert nsg["properties"]["securityRules"] == "securityRules"
    nsg_file = next(f for f, _, r in resources() if r["type"] == NSG)
    assert "securityRules" in parse(nsg_file)["parameters"]
    (passed,) = [p for _, target, p in module_decls(MAIN) if target == nsg_file.resolve()]
    assert passed["securityRules"] == "securityRules"
    assert parse(MAIN)["parameters"]["securityRules"]["type"] == "array"


def test_literal_rules_in_bicep_open_nothing_and_do_not_exist():
    found = literal_rules()
    assert opened_to_internet(found) == []
    assert found == [], "security rules are written in stack.yaml only, never in Bicep"


def test_rendered_rules_equal_the_spec(spec):
    rendered = nsg_security_rules(spec)
    assert [r["name"] for r in rendered] == [r.name for r in spec.security_rules]
    for rule, arm in zip(spec.security_rules, rendered):
        props = arm["properties"]
        assert props["priority"] == rule.priority
        assert props["access"].lower() == rule.access
        assert props["direction"].lower() == rule.direction
        assert props["protocol"] == {"tcp": "Tcp", "udp": "Udp", "any": "*"}[rule.protocol]
        expected_source = {"Management": ADMIN_CIDR, "Any": "*",
                           "Subnet": str(spec.network.subnet_cidr)}.get(rule.source, rule.source)
        assert props["sourceAddressPrefix"] == expected_source, rule.name
        expected_ports = {getattr(spec.ports, p) if isinstance(p, str) else p for p in rule.ports}
        assert _ports(props) == (expected_ports or None), rule.name
        assert props["destinationAddressPrefix"] == "*"
    assert bicep_parameters(spec, join_pool=True, ssh_public_key=SSH_KEY, tags=TAGS)["securityRules"]["value"] == rendered


def test_rendered_rules_open_no_protected_port_to_the_internet(params):
    rules = params["securityRules"]["value"]
    assert rules, "no rules rendered"
    assert opened_to_internet(rules) == []


def test_the_open_port_check_itself_catches_an_open_port():
    def rule(source, port):
        return {"name": "bad", "properties": {"direction": "Inbound", "access": "Allow", "sourceAddressPrefix": source,
                                              "destinationPortRange": port}}

    assert opened_to_internet([rule("*", "22")]) == ["bad: 22"]
    assert opened_to_internet([rule("Internet", "2379-2380")]) == ["bad: 2379", "bad: 2380"]
    assert len(opened_to_internet([rule("0.0.0.0/0", "*")])) == len(PROTECTED_PORTS)
    assert opened_to_internet([rule("VirtualNetwork", "5432"), rule("Internet", "5000")]) == []


def test_ssh_is_admitted_only_from_the_admin_cidr(spec, params):
    ssh = spec.ports.ssh
    for rule in params["securityRules"]["value"]:
        props = rule["properties"]
        ports = _ports(props)
        if props["access"] == "Allow" and props["direction"] == "Inbound" and (ports is None or ssh in ports):
            source = props["sourceAddressPrefix"]
            assert source in (ADMIN_CIDR, "VirtualNetwork"), f"{rule['name']} admits SSH from {source}"
            if source == ADMIN_CIDR:
                assert ipaddress.ip_network(source).prefixlen > 0


def test_missing_admin_cidr_is_a_clear_error():
    raw = raw_spec()
    raw["azure"]["admin_cidr"] = None
    spec = parse_spec(raw)
    with pytest.raises(ValueError, match=r"azure\.admin_cidr"):
        bicep_parameters(spec, join_pool=False, ssh_public_key=SSH_KEY, tags=TAGS)
    with pytest.raises(ValueError, match=r"azure\.admin_cidr"):
        nsg_security_rules(spec)


#: The inbound surface the NSG admitted before TLS (issue 17), as (source, port) of its allow rules,
#: written out here rather than derived: TLS runs on the same ports, so TLS must leave it as it was.
#: A change to the surface is made here on purpose, never as a side effect.
INBOUND_BEFORE_TLS = {
    ("Internet", 5000), ("Internet", 5001), ("AzureLoadBalancer", 8404),
    *(("VirtualNetwork", p) for p in (5432, 8008, 5000, 5001, 8404)),
    ("10.0.1.0/24", 2379), ("10.0.1.0/24", 2380), (ADMIN_CIDR, 22),
}
#: The compiled template the Azure tests deploy (``bicep build`` of main.bicep, see its README).
COMPILED = Path(__file__).resolve().parent / "azure" / "fixtures" / "bicep_build_main.json"


def inbound_allowed(rules: list[dict]) -> set[tuple[str, int]]:
    """(source, port) of every inbound allow rule; a rule over every port counts as port 0."""
    out = set()
    for rule in rules:
        props = rule["properties"]
        if props["direction"] == "Inbound" and props["access"] == "Allow":
            sources = props.get("sourceAddressPrefixes") or [props["sourceAddressPrefix"]]
            out |= {(src, port) for src in sources for port in (_ports(props) or {0})}
    return out


def test_tls_opens_nothing_new_in_the_nsg(spec, params):
    """Issue 17, item 7: PostgreSQL, Patroni's API and etcd speak TLS on the ports they always had,
    and the frontend's DNS name is a record, not a rule. The compiled template's NSG takes its rules
    from the securityRules parameter alone (no rule written in the template), those parameters are
    stack.yaml's security_rules, and what they admit inbound is exactly what was admitted before TLS."""
    compiled = json.loads(COMPILED.read_text())
    (nsg,) = [r for r in compiled["resources"].values() if r["properties"]["parameters"].get("securityRules")]
    assert nsg["properties"]["parameters"]["securityRules"] == {"value": "[parameters('securityRules')]"}
    keys = ("sourceAddressPrefix", "sourceAddressPrefixes", "destinationPortRange", "destinationPortRanges")
    assert [n for n in walk(compiled) if isinstance(n, dict) and any(k in n for k in keys)] == []
    assert [r for _, _, r in resources() if r["type"].startswith(NSG + "/")] == [], "no rule as a child resource"
    rules = params["securityRules"]["value"]
    assert rules == nsg_security_rules(spec) and [r["name"] for r in rules] == [r.name for r in spec.security_rules]
    assert inbound_allowed(rules) == INBOUND_BEFORE_TLS
    assert {(s, p) for s, p in inbound_allowed(rules) if s in OPEN_SOURCES} == {("Internet", 5000), ("Internet", 5001)}


def test_the_inbound_surface_check_sees_a_port_opened_for_tls(params):
    """Negative control: a rule admitting TLS on a port of its own (5433) or Patroni's API from the
    internet changes the surface."""
    extra = {"name": "allow-tls", "properties": {"direction": "Inbound", "access": "Allow",
                                                 "sourceAddressPrefix": "Internet", "destinationPortRanges": ["5433", "8008"]}}
    assert inbound_allowed([*params["securityRules"]["value"], extra]) - INBOUND_BEFORE_TLS == {
        ("Internet", 5433), ("Internet", 8008)}


# ---------------------------------------------------------------- the frontend's DNS name (TLS)


def _pip_declarations() -> dict[str, dict]:
    """The params of every declaration of the public IP module, by symbol (main's and network's)."""
    return {sym: passed for f in FILES for sym, target, passed in module_decls(f) if target.name == "publicIp.bicep"}


def test_the_frontend_has_a_dns_name_unique_to_its_group_and_the_nat_address_none():
    """Clients verify the frontend's name (sslmode=verify-full): the load balancer's public IP gets a
    DNS label, the stack's name and a suffix unique to its resource group (labels are unique per
    region: two stacks of one name in two groups must not collide), and main outputs the name Azure
    assigned. The NAT gateway's address gets none."""
    declared = _pip_declarations()
    assert set(declared) == {"frontendPublicIp", "natPublicIp"}
    assert "domainNameLabel" not in declared["natPublicIp"]
    assert declared["frontendPublicIp"]["domainNameLabel"] == "frontendDomainNameLabel"
    label = parse(MAIN)["variables"]["frontendDomainNameLabel"]["value"]
    assert label == "${stackName}-${uniqueString(resourceGroup().id)}"
    # The longest stack name + '-' + uniqueString's 13 characters is still a valid Azure DNS label.
    longest = "a" * decorators(parse(MAIN)["parameters"]["stackName"])["max_length"] + "-" + "b" * 13
    assert len(longest) == 29 and re.fullmatch(r"[a-z][a-z0-9-]{1,61}[a-z0-9]", longest)

    pip_file = MODULES / "publicIp.bicep"
    (body,) = [r["config"] for _, _, r in resources(pip_file)]
    dns = body["properties"]["dnsSettings"]["operator"]
    assert dns["type"] == "conditional"
    assert dns["operands"]["condition"] == {"function": {"type": "empty",
                                                         "parameters": {"item_to_test": "domainNameLabel"}}}
    assert dns["operands"]["true_value"] is None, "no label: no DNS settings at all"
    assert dns["operands"]["false_value"] == {"domainNameLabel": "domainNameLabel"}
    assert parse(pip_file)["parameters"]["domainNameLabel"]["default"] == ""
    fqdn = parse(pip_file)["outputs"]["fqdn"]["value"]["operator"]["operands"]
    assert fqdn["true_value"] == "" and references(fqdn["false_value"]) >= {"publicIp", "dnsSettings", "fqdn"}
    main_fqdn = parse(MAIN)["outputs"]["frontendFqdn"]
    assert main_fqdn["type"] == "string" and _root(main_fqdn["value"]) == "frontendPublicIp"
    assert _output_name(main_fqdn["value"]) == "fqdn"
    described = decorators(main_fqdn)["description"]
    assert "sslmode=verify-full" in described and "tls/trust.crt" in described, "the Bicep says what a client needs"


# ---------------------------------------------------------------- parameters vs main.bicep


def test_parameters_match_the_params_of_main(params):
    declared = parse(MAIN)["parameters"]
    unknown, missing = param_mismatch(declared, params)
    assert not unknown, f"parameters.py gives params main.bicep does not declare: {unknown}"
    assert not missing, f"parameters.py misses required params: {missing}"
    types = {"string": str, "int": int, "bool": bool, "array": list, "object": dict}
    for name, wrapped in params.items():
        assert set(wrapped) == {"value"}, name
        value, expected = wrapped["value"], types[declared[name]["type"]]
        assert isinstance(value, expected) and (expected is bool or not isinstance(value, bool)), (name, value)
    json.dumps(params)  # ARM takes JSON


def test_parameters_carry_the_spec_values(spec, params):
    v = {k: w["value"] for k, w in params.items()}
    assert v["vnetAddressPrefix"] == "10.0.0.0/16" == str(spec.network.vnet_cidr)
    assert v["subnetAddressPrefix"] == str(spec.network.subnet_cidr)
    assert v["nodes"] == [{"name": n.name, "privateIp": str(n.address), "zone": n.zone} for n in spec.nodes]
    assert (v["haproxyPrimaryPort"], v["haproxyReplicasPort"]) == (5000, 5001)
    assert v["haproxyHealthPort"] == spec.ports.haproxy_health
    assert (v["probeIntervalSeconds"], v["probeThreshold"]) == (spec.load_balancer.probe_interval_s,
                                                               spec.load_balancer.probe_threshold)
    assert v["probeNoHealthyBackends"] == spec.load_balancer.no_healthy_backends == "AllProbedUp"
    assert v["sshPort"] == spec.ports.ssh
    assert v["vmSize"] == spec.azure.vm_size and v["location"] == spec.azure.location
    assert v["tags"] == TAGS and v["sshPublicKey"] == SSH_KEY and v["stackName"] == spec.name
    assert v["adminUsername"] == spec.admin_user
    assert v["backupEnabled"] is spec.backup.enabled is True and v["backupContainer"] == spec.backup.container
    raw = raw_spec()
    raw["azure"]["admin_cidr"] = ADMIN_CIDR
    raw.setdefault("backup", {}).update(enabled=False, container="other-repo")
    off = bicep_parameters(parse_spec(raw), join_pool=False, ssh_public_key=SSH_KEY, tags=TAGS)
    assert (off["backupEnabled"]["value"], off["backupContainer"]["value"]) == (False, "other-repo")


def test_parameters_refuse_a_bad_key_or_no_tags(spec):
    with pytest.raises(ValueError, match="ssh_public_key"):
        bicep_parameters(spec, join_pool=False, ssh_public_key="", tags=TAGS)
    with pytest.raises(ValueError, match="tags"):
        bicep_parameters(spec, join_pool=False, ssh_public_key=SSH_KEY, tags={})


# ---------------------------------------------------------------- load balancer and pool


def test_load_balancer_is_standard_regional_with_one_frontend():
    (lb,) = of_type(LB)
    lb_res = next(r for _, _, r in resources() if r["type"] == LB)
    assert lb_res["api_version"] >= "2024-05-01", "noHealthyBackendsBehavior needs a recent API version"
    assert lb["sku"] == {"name": "Standard", "tier": "Regional"}
    assert len(lb["properties"]["frontendIPConfigurations"]) == 1
    (pip_file,) = [t for _, t, _ in module_decls(MAIN) if t.name == "publicIp.bicep"]
    (pip,) = [r["config"] for _, _, r in resources(pip_file)]
    assert pip["sku"]["name"] == "Standard"
    assert pip["properties"]["publicIPAllocationMethod"] == "Static"
    (lb_pip_params,) = [p for s, t, p in module_decls(MAIN) if t == pip_file and "zones" in p]
    assert lb_pip_params["zones"] == ["1", "2", "3"]


def test_backend_pool_is_one_empty_named_pool():
    (lb,) = of_type(LB)
    (pool,) = lb["properties"]["backendAddressPools"]
    assert set(pool) == {"name"}, f"the pool must be declared with a name only, got {pool}"
    lb_file = next(f for f, _, r in resources() if r["type"] == LB)
    lb_params = parse(lb_file)["parameters"]
    assert pool["name"] == "backendPoolName" and lb_params["backendPoolName"]["default"] == "nodes"
    (passed,) = [p for _, t, p in module_decls(MAIN) if t == lb_file.resolve()]
    assert evaluate(passed["backendPoolName"], {k: v["value"] for k, v in parse(MAIN)["variables"].items()}) == "nodes"
    for f in FILES:
        assert not dicts_with(parse(f), "loadBalancerBackendAddresses"), f"{f.name} gives the pool addresses"
    assert not [r for _, _, r in resources() if r["type"].startswith(LB + "/backendAddressPools")], \
        "a pool child resource fails on redeploy over NIC members"


def test_probe_uses_probe_threshold_on_the_haproxy_health_port():
    (lb,) = of_type(LB)
    (probe,) = lb["properties"]["probes"]
    props = probe["properties"]
    assert props.get("numberOfProbes") == "probeThreshold", "only an echo of probeThreshold, against what-if noise"
    assert props["probeThreshold"] == "probeThreshold" and props["intervalInSeconds"] == "probeIntervalSeconds"
    assert props["port"] == "haproxyHealthPort" and props["protocol"] == "Http"
    assert props["noHealthyBackendsBehavior"] == "probeNoHealthyBackends"
    lb_file = next(f for f, _, r in resources() if r["type"] == LB)
    assert props["requestPath"] == "probePath" and parse(lb_file)["parameters"]["probePath"]["default"] == "/health"
    (passed,) = [p for _, t, p in module_decls(MAIN) if t == lb_file.resolve()]
    for name in ("probeThreshold", "probeIntervalSeconds", "probeNoHealthyBackends", "haproxyHealthPort"):
        assert passed[name] == name
    for f in FILES:
        assert [d["numberOfProbes"] for d in dicts_with(parse(f), "numberOfProbes")] in ([], ["probeThreshold"]), f.name


def test_balancing_rules_for_both_haproxy_ports_reset_and_no_snat():
    (lb,) = of_type(LB)
    lb_file = next(f for f, _, r in resources() if r["type"] == LB)
    rules = lb["properties"]["loadBalancingRules"]
    body = loop_body(rules)
    over = rules["loop_type"]["detail"]["array_name"]
    ports = {item["port"] for item in parse(lb_file)["variables"][over]["value"]}
    assert ports == {"haproxyPrimaryPort", "haproxyReplicasPort"}
    props = body["properties"]
    assert props["enableTcpReset"] is True
    assert props["disableOutboundSnat"] is True
    assert props["protocol"] == "Tcp"
    assert references(props["frontendPort"]) == references(props["backendPort"]) == {"rule", "port"}


def test_ssh_reaches_each_node_through_its_own_nat_rule():
    (lb,) = of_type(LB)
    nat = lb["properties"]["inboundNatRules"]
    assert nat["loop_type"]["detail"]["array_name"] == "sshNatRules"
    assert loop_body(nat)["properties"]["backendPort"] == "sshPort"
    main = parse(MAIN)
    assert main["parameters"]["sshNatFrontendPortStart"]["default"] == 50001
    var = main["variables"]["sshNatRules"]["value"]
    assert var["loop_type"]["detail"]["array_name"] == "nodes"
    assert references(loop_body(var)["frontendPort"]) == {"sshNatFrontendPortStart", "i"}
    assert references(loop_body(main["outputs"]["nodes"]["value"])["sshPort"]) >= {"sshNatRules", "frontendPort"}


# ---------------------------------------------------------------- NICs and the staged pool join


def _ip_configs() -> list[dict]:
    configs = [c for nic in of_type(NIC) for c in nic["properties"]["ipConfigurations"]]
    assert configs, "no NIC ip configuration found"
    return configs


def test_nics_join_the_pool_only_under_join_backend_pool():
    for config in _ip_configs():
        props = config["properties"]
        expr = props["loadBalancerBackendAddressPools"]
        op = expr["operator"]
        assert op["type"] == "conditional" and op["operands"]["condition"] == "joinBackendPool"
        env = {"backendPoolResourceId": "<pool>"}
        assert evaluate(expr, {**env, "joinBackendPool": False}) == []
        assert evaluate(expr, {**env, "joinBackendPool": True}) == [{"id": "<pool>"}]
        rest = {k: v for k, v in props.items() if k != "loadBalancerBackendAddressPools"}
        assert "backendPoolResourceId" not in references(rest), "the pool is referenced outside the condition"
        assert "publicIPAddress" not in props, "no public IP on the VMs"
        assert props["privateIPAllocationMethod"] == "Static" and props["privateIPAddress"] == "privateIp"


def test_join_backend_pool_flows_from_the_stage(spec):
    main = parse(MAIN)
    assert main["parameters"]["joinBackendPool"]["type"] == "bool"
    assert main["parameters"]["joinBackendPool"].get("default") is None, "each stage must say which it is"
    (vm_params,) = [p for _, t, p in module_decls(MAIN) if t.name == "vm.bicep"]
    assert vm_params["joinBackendPool"] == "joinBackendPool"
    for join in (False, True):
        rendered = bicep_parameters(spec, join_pool=join, ssh_public_key=SSH_KEY, tags=TAGS)
        assert rendered["joinBackendPool"]["value"] is join


# ---------------------------------------------------------------- VMs and network


def test_vms_are_debian_12_ssh_key_only_in_their_zone():
    (vm,) = of_type(VM)
    vm_file = next(f for f, _, r in resources() if r["type"] == VM)
    vm_params = parse(vm_file)["parameters"]
    assert vm_params["imageReference"]["default"] == {**IMAGE, "version": "latest"}, "preflight checks sizes for IMAGE"
    assert vm["properties"]["storageProfile"]["imageReference"] == "imageReference"
    linux = vm["properties"]["osProfile"]["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True
    assert linux["ssh"]["publicKeys"][0]["keyData"] == "sshPublicKey"
    assert vm["properties"]["osProfile"]["adminUsername"] == "adminUsername"
    assert vm["zones"] == ["zone"]
    main = parse(MAIN)
    (decl,) = [m for m in main["modules"].values() if m["detail"]["path"].endswith("vm.bicep")]
    assert decl["config"]["loop_type"]["detail"]["array_name"] == "nodes"
    passed = decl["config"]["config"]["params"]
    assert references(passed["zone"]) == {"node", "zone"}
    assert references(passed["privateIp"]) == {"node", "privateIp"}


def test_the_os_disk_the_vm_creates_carries_the_tags():
    """Azure gives the OS disk a VM creates from its image none of the VM's tags, so a sweep by tag
    missed it: the VM module tags it with a ``Microsoft.Resources/tags`` extension resource."""
    vm_file = next(f for f, _, r in resources() if r["type"] == VM)
    (vm,) = of_type(VM)
    disk_name = vm["properties"]["storageProfile"]["osDisk"]["name"]
    found = {r["type"]: (sym, r) for _, sym, r in resources(vm_file)}
    disk_sym, disk = found[DISK]
    assert disk["existing"] and disk["config"]["name"] == disk_name, "the tagged disk is the VM's OS disk"
    _, tags = found[TAGS_RESOURCE]
    vm_sym = next(sym for _, sym, r in resources(vm_file) if r["type"] == VM)
    assert tags["config"]["scope"] == disk_sym and tags["config"]["name"] == "default"
    assert tags["config"]["properties"] == {"tags": "tags"} and tags["config"]["dependsOn"] == [vm_sym]


def test_subnet_has_nsg_and_nat_gateway_and_no_default_outbound():
    (vnet,) = of_type(VNET)
    (subnet,) = vnet["properties"]["subnets"]
    props = subnet["properties"]
    assert "networkSecurityGroup" in props and "natGateway" in props
    assert props["defaultOutboundAccess"] is False
    (nat,) = of_type(NAT)
    assert nat["sku"] == {"name": "Standard"} and nat["properties"]["publicIpAddresses"]
    (network,) = [p for _, t, p in module_decls(MAIN) if t.name == "network.bicep"]
    assert network["addressPrefix"] == "vnetAddressPrefix"
    assert network["subnetAddressPrefix"] == "subnetAddressPrefix"


def test_bicepconfig_makes_the_security_rules_errors():
    rules = json.loads((BICEP / "bicepconfig.json").read_text())["analyzers"]["core"]["rules"]
    for name in ("secure-secrets-in-params", "outputs-should-not-contain-secrets", "no-hardcoded-env-urls",
                 "protect-commandtoexecute-secrets", "use-secure-value-for-secure-inputs",
                 "secure-params-in-nested-deploy", "adminusername-should-not-be-literal", "no-unused-params",
                 "secure-parameter-default"):
        assert rules.get(name, {}).get("level") == "error", name


#: Properties Azure fills with a default when a template omits them, so the what-if after attach
#: reports them as a change (a Modify or Delete delta) although nothing would change: (type, path).
AZURE_DEFAULTS = [
    (LB, ("properties", "probes", 0, "properties", "numberOfProbes")),
    (VM, ("properties", "storageProfile", "osDisk", "diskSizeGB")),
    (VM, ("properties", "osProfile", "requireGuestProvisionSignal")),
    (VNET, ("properties", "subnets", 0, "properties", "privateEndpointNetworkPolicies")),
    (VNET, ("properties", "subnets", 0, "properties", "privateLinkServiceNetworkPolicies")),
]


def omitted_defaults(bodies: dict[str, list[dict]]) -> list[str]:
    """The ``AZURE_DEFAULTS`` that a resource body of ``bodies`` (type -> bodies) leaves out."""
    missing = []
    for rtype, path in AZURE_DEFAULTS:
        for body in bodies[rtype]:
            node = body
            for key in path:
                node = node[key] if isinstance(node, list) or (isinstance(node, dict) and key in node) else None
                if node is None:
                    missing.append(f"{rtype}: {'.'.join(map(str, path))}")
                    break
    return missing


def test_every_property_azure_defaults_is_set_so_what_if_shows_no_noise():
    """Issue 19, defect 7: Azure returns the defaults a template omits (the probe's numberOfProbes, a
    VM's OS disk size, ...) and what-if reports them as Modify or Delete deltas, so the drift gate
    after attach could fail on a stack that had not drifted. Each is set explicitly."""
    bodies = {rtype: of_type(rtype) for rtype, _ in AZURE_DEFAULTS}
    assert omitted_defaults(bodies) == []
    (probe,) = bodies[LB][0]["properties"]["probes"]
    assert probe["properties"]["numberOfProbes"] == probe["properties"]["probeThreshold"], "one threshold"
    bodies[VM] = [json.loads(json.dumps(bodies[VM][0]).replace('"diskSizeGB"', '"diskSize"'))]
    assert omitted_defaults(bodies) == [f"{VM}: properties.storageProfile.osDisk.diskSizeGB"], "negative control"


# ---------------------------------------------------------------- the backup repository (issue 18)


def _backup_declaration() -> dict:
    (decl,) = [m for m in parse(MAIN)["modules"].values() if m["detail"]["path"] == "modules/storage.bicep"]
    return decl


def test_the_backup_repository_is_deployed_only_when_the_spec_enables_it():
    """The storage module is declared under ``if (backupEnabled)``, given the spec's container, and
    main's outputs about it are empty strings when it is off."""
    decl = _backup_declaration()
    assert decl["config"]["condition"] == "backupEnabled"
    passed = body(decl["config"])["params"]
    assert passed["containerName"] == "backupContainer" and passed["name"] == "backupAccountName"
    main = parse(MAIN)
    assert main["parameters"]["backupEnabled"]["type"] == "bool"
    assert main["parameters"]["backupEnabled"].get("default") is None, "the spec says whether"
    for name, output in (("backupAccountName", "name"), ("backupBlobHost", "blobHost")):
        operands = main["outputs"][name]["value"]["operator"]["operands"]
        assert operands["condition"] == "backupEnabled" and operands["false_value"] == ""
        assert _root(operands["true_value"]) == "backupStorage" and _output_name(operands["true_value"]) == output


def test_the_backup_account_name_is_valid_and_unique_to_its_group():
    """Storage account names are global: 3-24 lower-case letters and digits. The name is a prefix
    and ``uniqueString`` of the resource group (13 characters), as the frontend's DNS label is."""
    name = parse(MAIN)["variables"]["backupAccountName"]["value"]
    prefix, _, rest = name.partition("${")
    assert rest == "uniqueString(resourceGroup().id)}", name
    assert re.fullmatch(r"[a-z0-9]{3,24}", prefix + "b" * 13)
    bounds = decorators(parse(MODULES / "storage.bicep")["parameters"]["name"])
    assert (bounds["min_length"], bounds["max_length"]) == (3, 24)


def test_the_backup_account_admits_tls12_https_from_the_subnet_only():
    """TLS 1.2 at least, HTTPS only, no anonymous access to any blob, shared key on (pgBackRest signs
    with it); the network rules deny by default, let no Azure service bypass them and admit only the
    subnet of the nodes, whose Microsoft.Storage service endpoint carries the nodes' traffic."""
    (account,) = of_type(STORAGE)
    assert account["kind"] == "StorageV2" and account["tags"] == "tags"
    props = account["properties"]
    assert props["minimumTlsVersion"] == "TLS1_2" and props["supportsHttpsTrafficOnly"] is True
    assert props["allowBlobPublicAccess"] is False and props["allowSharedKeyAccess"] is True
    assert props["networkAcls"] == {"defaultAction": "Deny", "bypass": "None", "ipRules": [],
                                    "virtualNetworkRules": [{"id": "subnetResourceId", "action": "Allow"}]}
    assert body(_backup_declaration()["config"])["params"]["subnetResourceId"] == {"operator": {
        "type": "property_accessor", "operands": {"operand_1": "network", "operand_2": {"operator": {
            "type": "property_accessor", "operands": {"operand_1": "outputs", "operand_2": "subnetResourceId"}}}}}}
    (vnet,) = of_type(VNET)
    (subnet,) = vnet["properties"]["subnets"]
    assert subnet["properties"]["serviceEndpoints"] == [{"service": "Microsoft.Storage"}]


def test_the_backup_account_has_one_private_container_named_by_the_spec():
    (service,) = of_type(BLOB_SERVICE)
    (container,) = of_type(CONTAINER)
    assert service["parent"] == "account" and service["name"] == "default"
    assert container["parent"] == "blobService" and container["name"] == "containerName"
    assert container["properties"] == {"publicAccess": "None"}


def test_the_backup_key_is_never_in_the_templates():
    """The account's key is read by the deployer with ListKeys (``AzureTarget.backup_repository``):
    no template lists keys, so none can leak into an output or the deployment's history."""
    for f in FILES:
        assert not re.search(r"listKeys|\.keys\b|primaryKey", f.read_text()), f"{f.name} reads the account's keys"
