"""The SDK releases installed return what the target reads: the REST API's JSON.

Every reader of the Azure target takes ``clients.rest(result)`` to be the REST body (camelCase,
``properties`` nested). That holds for the "hybrid" model releases only (``clients.HYBRID_SINCE``,
pyproject.toml's floors); the msrest models of older releases have a snake_case, flattened
``as_dict()`` on which every lookup finds nothing. These tests fail on such a release: the first
through the real clients, the second on a stand-in of the old shape.
"""

from __future__ import annotations

import re
import tomllib

import pytest
from azure_fakes import CMP, DEPLOYMENT, NET, answer_keys, load

from deployer.paths import REPO
from deployer.targets.azure.clients import HYBRID_SINCE, rest
from deployer.targets.base import TargetError


def test_every_client_returns_the_rest_json_the_target_reads(deployed, arm):
    """Fails with azure-mgmt-network < 31, -compute < 38, -resource < 26 or -storage < 25 (msrest models)."""
    arm.add("GET", f"{NET}/networkSecurityGroups/pgha-nsg", load("nsg.json"))
    arm.add("GET", f"{CMP}/virtualMachines/pgha-pg1/instanceView", load("vm_instance_view.json"))
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.lro("POST", f"{DEPLOYMENT}/whatIf", load("what_if_attach.json"))
    answer_keys(arm)
    az = deployed._az
    assert rest(az.network.network_security_groups.get("rg-pgha", "pgha-nsg")) == load("nsg.json")
    assert rest(az.compute.virtual_machines.instance_view("rg-pgha", "pgha-pg1")) == load("vm_instance_view.json")
    assert rest(az.resources.resource_groups.get("rg-pgha")) == load("resource_group.json")
    what_if = rest(az.deployments.begin_what_if("rg-pgha", "pgha-main", {"properties": {"mode": "Incremental"}}).result())
    assert what_if["properties"]["changes"] == load("what_if_attach.json")["properties"]["changes"]
    assert rest(az.storage.storage_accounts.list_keys("rg-pgha", "pgbackrest5f3tcbt2lzcbk")) == \
        load("storage_account_keys.json")


class MsrestNetworkSecurityGroup:
    """What ``azure-mgmt-network`` 27 returns for the NSG: ``as_dict()`` snake_case and flattened."""

    __module__ = "azure.mgmt.network.models._models_py3"

    def as_dict(self):
        return {"name": "pgha-nsg", "location": "westeurope",
                "security_rules": [{"name": "allow-mgmt-ssh", "priority": 120, "direction": "Inbound"}]}


def test_rest_refuses_an_msrest_model_naming_the_release_to_install():
    with pytest.raises(TargetError, match=r"^azure-mgmt-network \S+ returns msrest models, .*"
                                          r"install azure-mgmt-network>=31 \(pyproject.toml's floor"):
        rest(MsrestNetworkSecurityGroup())


def test_pyproject_admits_no_release_before_the_hybrid_models():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pattern = re.compile(r"(?P<name>azure-mgmt-[a-z-]+)>=(?P<floor>[\d.]+)")
    floors = {m["name"]: m["floor"] for d in dependencies if (m := pattern.match(d))}
    assert floors == HYBRID_SINCE
