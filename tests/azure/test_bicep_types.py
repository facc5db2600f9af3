"""``bicep/`` type-checked offline against the Bicep compiler's type data (``bicep_typecheck``),
and proven to fail on planted typos of each kind it guards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pycep", reason="pycep-parser is a dev dependency: pip install -e '.[dev]'")
import bicep_typecheck as typecheck  # noqa: E402

from deployer.paths import BICEP_DIR, REPO  # noqa: E402

#: The upstream type data, beside the checkout as ``shared/`` is laid out for the project.
REFERENCE = REPO.parent / "shared" / "reference" / "bicep-types"
#: Resource types outside the vendored data, each for a reason: the check must not lose one silently.
UNCHECKED = {
    "Microsoft.Compute/disks@2024-03-02",  # `existing`: the VM's OS disk, only named to scope its tags
    "Microsoft.Resources/tags@2022-09-01",  # an extension resource whose body is just `properties.tags`
}


@pytest.fixture(scope="module")
def index() -> typecheck.Index:
    return typecheck.Index()


def test_every_resource_body_matches_the_type_data(index):
    problems, checked, unknown = typecheck.check_templates(BICEP_DIR / "main.bicep", index)
    assert problems == []
    assert unknown == UNCHECKED
    assert sorted(checked) == ["loadBalancer.bicep: loadBalancer", "network.bicep: natGateway", "network.bicep: vnet",
                               "nsg.bicep: nsg", "publicIp.bicep: publicIp", "storage.bicep: account",
                               "storage.bicep: blobService", "storage.bicep: container", "vm.bicep: nic", "vm.bicep: vm"]


def test_every_resource_whose_type_takes_tags_is_tagged(index):
    """Expiry and leftovers go by the stack's tags: every resource the type data gives a ``tags``
    property sets them, and the only ones it gives none are the storage account's blob service and
    container (deleted with the account), which ``tests/test_bicep.py`` exempts (``UNTAGGABLE``)."""
    untaggable = set()
    for template in typecheck.templates(BICEP_DIR / "main.bicep"):
        for symbol, resource in template.tree.get("resources", {}).items():
            found = index.body(f"{resource['type']}@{resource['api_version']}")
            if found is None or resource["existing"]:
                continue
            if "tags" in found[1]["properties"]:
                assert "tags" in typecheck._body(resource["config"]), f"{template.path.name}: {symbol} is not tagged"
            else:
                untaggable.add(resource["type"])
    assert untaggable == {"Microsoft.Storage/storageAccounts/blobServices",
                          "Microsoft.Storage/storageAccounts/blobServices/containers"}


#: (file, text, planted text, the problem it must cause): one typo of each kind the check guards.
PLANTS = [
    ("modules/loadBalancer.bicep", "probeThreshold: probeThreshold", "probeTreshold: probeThreshold",
     "loadBalancer.bicep: loadBalancer.properties.probes[0].properties.probeTreshold: unknown property of "
     "ProbePropertiesFormat (did you mean probeThreshold?)"),
    ("modules/nsg.bicep", "flushConnection: true", "flushConnection: true\n    provisioningState: 'Succeeded'",
     "nsg.bicep: nsg.properties.provisioningState: read-only property of NetworkSecurityGroupPropertiesFormat"),
    ("modules/loadBalancer.bicep", "          protocol: 'Http'\n", "",
     "loadBalancer.bicep: loadBalancer.properties.probes[0].properties.protocol: missing required property"),
    ("modules/vm.bicep", "caching: 'ReadWrite'", "caching: 'ReadWirte'",
     "vm.bicep: vm.properties.storageProfile.osDisk.caching: 'ReadWirte' is not one of ['None', 'ReadOnly', 'ReadWrite']"),
    ("modules/loadBalancer.bicep", "protocol: 'Tcp'\n        frontendPort: rule.port", "protocol: 'Tcpp'\n        frontendPort: rule.port",
     "loadBalancer.bicep: loadBalancer.properties.loadBalancingRules[*].properties.protocol: 'Tcpp' is no known "
     "value (did you mean 'Tcp'?)"),
    ("modules/vm.bicep", "[{ id: backendPoolResourceId }] : []", "[{ idd: backendPoolResourceId }] : []",
     "vm.bicep: nic.properties.ipConfigurations[0].properties.loadBalancerBackendAddressPools<true_value>[0].idd: "
     "unknown property"),
    ("modules/vm.bicep", "  'Premium_LRS'\n])", "  'Premium_LRS'\n  'Premium_LSR'\n])",
     "vm.bicep: vm.properties.storageProfile.osDisk.managedDisk.storageAccountType<osDiskType>: 'Premium_LSR' is no "
     "known value (did you mean 'Premium_LRS'?)"),
    ("main.bicep", "    zones: [\n      '1'", "    zones: [\n      1",
     "publicIp.bicep: publicIp.zones<zones>[0]: expected a string, got int 1"),
    ("modules/loadBalancer.bicep", "enableFloatingIP: false\n        enableTcpReset: true\n        disableOutboundSnat",
     "enableFloatingIP: 'no'\n        enableTcpReset: true\n        disableOutboundSnat",
     "loadBalancingRules[*].properties.enableFloatingIP: expected a bool, got string 'no'"),
    ("modules/publicIp.bicep", "{ domainNameLabel: domainNameLabel }", "{ domainNameLable: domainNameLabel }",
     "publicIp.bicep: publicIp.properties.dnsSettings<false_value>.domainNameLable: unknown property of "
     "PublicIPAddressDnsSettings (did you mean domainNameLabel?)"),
    ("modules/loadBalancer.bicep", "          protocol: 'Http'\n", "          protocol: null\n",
     "loadBalancer.bicep: loadBalancer.properties.probes[0].properties.protocol: null where a value is required"),
    ("modules/storage.bicep", "minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1_2x'",
     "storage.bicep: account.properties.minimumTlsVersion: 'TLS1_2x' is no known value (did you mean 'TLS1_2'?)"),
    ("modules/storage.bicep", "      defaultAction: 'Deny'\n", "",
     "storage.bicep: account.properties.networkAcls.defaultAction: missing required property of NetworkRuleSet"),
    ("modules/storage.bicep", "allowBlobPublicAccess: false", "allowBlobPublicAcess: false",
     "storage.bicep: account.properties.allowBlobPublicAcess: unknown property of "
     "StorageAccountPropertiesCreateParametersOrStorageAccountProperties (did you mean allowBlobPublicAccess?)"),
    ("modules/storage.bicep", "  'Standard_GRS'\n])", "  'Standard_GRS'\n  'Standard_GZSR'\n])",
     "storage.bicep: account.sku.name<skuName>: 'Standard_GZSR' is no known value (did you mean 'Standard_GZRS'?)"),
    ("modules/storage.bicep", "publicAccess: 'None'", "publicAccess: false",
     "storage.bicep: container.properties.publicAccess: False matches no member of the union"),
    ("main.bicep", "containerName: backupContainer", "containerName: 3",
     "storage.bicep: container.name<containerName>: expected a string, got int 3"),
]


@pytest.mark.parametrize("file, text, planted, problem", PLANTS, ids=[p[3].split(": ", 2)[-1][:40] for p in PLANTS])
def test_the_type_check_fails_on_a_planted_typo(tmp_path, index, file, text, planted, problem):
    """Negative controls: each kind of typo, in a resource body, a loop body, one branch of a
    conditional, a parameter's @allowed values and a value a module declaration passes (one deployed
    under a condition too); and a null where the property is required (null on an optional one, as
    the DNS settings of a public IP without a label, leaves it out and passes)."""
    shutil.copytree(BICEP_DIR, tmp_path / "bicep")
    path = tmp_path / "bicep" / file
    assert text in path.read_text(), f"the plant no longer matches {file}"
    path.write_text(path.read_text().replace(text, planted, 1))
    problems, _, _ = typecheck.check_templates(tmp_path / "bicep" / "main.bicep", index)
    assert len(problems) == 1 and problem in problems[0], problems


@pytest.mark.parametrize("upstream", sorted(typecheck.TYPES))
def test_the_vendored_type_data_is_the_upstream_data_the_templates_reach(upstream):
    """Each vendored file against its upstream ``types.json``, where that lies beside the checkout."""
    source = REFERENCE / upstream / "types.json"
    if not source.exists():
        pytest.skip(f"the upstream type data is not at {source} (bicep-types/README.md says where it comes from)")
    used = {f"{r['type']}@{r['api_version']}" for t in typecheck.templates(BICEP_DIR / "main.bicep")
            for r in t.tree.get("resources", {}).values()}
    vendored = typecheck.TYPES[upstream]
    trimmed = typecheck.trim(json.loads(source.read_text()), used)
    assert vendored.read_text() == typecheck.dump(trimmed), f"regenerate {vendored.name} (see its README)"
    assert (typecheck.DATA / "LICENSE").read_text() == (REFERENCE / "LICENSE").read_text()


def test_the_vendored_files_keep_their_license_and_provenance():
    readme = (typecheck.DATA / "README.md").read_text()
    assert "MIT" in (typecheck.DATA / "LICENSE").read_text() and "Copyright (c) Microsoft Corporation" in \
        (typecheck.DATA / "LICENSE").read_text()
    for upstream, vendored in typecheck.TYPES.items():
        assert upstream in readme and vendored.name in readme and Path(vendored).exists()
