"""Preflight, identity and the staged deploy of the Azure target: what-if first, then the deployment."""

from __future__ import annotations

import pytest
from azure.identity import AzurePipelinesCredential, DefaultAzureCredential
from azure_fakes import (CMP, DEPLOYMENT, NET, NOW, SUB, NoCredential, answer_keys, answer_pool, answer_prerequisites,
                         answer_redeploy, fake_bicep_cli, load)

from deployer.targets.azure import bicep
from deployer.targets.azure.identity import AzureEnv
from deployer.targets.azure.parameters import bicep_parameters
from deployer.targets.base import MissingPrerequisite, TargetError

PIPELINE = {"SYSTEM_OIDCREQUESTURI": "https://dev.azure.com/org/_apis/distributedtask/hubs/build/plans/x/jobs/y/oidctoken",
            "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": "sc-id", "AZURESUBSCRIPTION_CLIENT_ID": "client-id",
            "AZURESUBSCRIPTION_TENANT_ID": "tenant-id", "SYSTEM_ACCESSTOKEN": "not-a-real-token"}
EXPECTED_TAGS = {"stack": "pgha", "expires": "2026-01-01T08:00:00Z", "created-by": "pgha-deployer"}


def parameters_sent(request_body: dict) -> dict:
    return request_body["properties"]["parameters"]


# ----- preflight and identity -----

def test_preflight_passes_with_credential_allow_listed_subscription_and_compiler(target, arm):
    answer_prerequisites(arm)
    target.preflight()
    assert {m for m, _, _ in arm.sent()} == {"GET"}, "preflight changes nothing"


def sku(name: str) -> dict:
    return next(s for s in load("resource_skus.json")["value"] if s["name"] == name)


@pytest.mark.parametrize("feature, vm_size, skus, problem", [
    ("NotRegistered", "Standard_B2s", None,
     "the subscription feature Microsoft.Compute/EncryptionAtHost is NotRegistered, and the VMs use encryption at "
     "host: az feature register --namespace Microsoft.Compute --name EncryptionAtHost"),
    ("Registered", "Standard_A2_v2", None, "VM size Standard_A2_v2 does not support encryption at host"),
    ("Registered", "Standard_D2s_v5", None,
     "VM size Standard_D2s_v5 is restricted in westeurope zone(s) 3 (NotAvailableForSubscription), where nodes run"),
    ("Registered", "Standard_B2s", {"value": [sku("StandardSSD_LRS")]},
     "VM size Standard_B2s (azure.vm_size) is not offered in westeurope (azure.location)"),
])
def test_preflight_names_what_the_subscription_lacks_before_anything_is_created(make_target, spec, arm, feature,
                                                                                vm_size, skus, problem):
    """ARM refuses these only deep in a nested deployment, after the network and load balancer exist."""
    answer_prerequisites(arm, feature=feature, skus=skus)
    sized = spec.model_copy(update={"azure": spec.azure.model_copy(update={"vm_size": vm_size})})
    with pytest.raises(MissingPrerequisite, match="nothing was created") as err:
        make_target(spec=sized).preflight()
    assert problem in str(err.value) and str(err.value).count("\n  - ") == 1
    (_, url, _), = arm.sent("GET", "/skus")
    assert "location+eq+%27westeurope%27" in url or "location%20eq%20%27westeurope%27" in url


def b2s(**changes) -> dict:
    """``Standard_B2s`` as the SKU list reports it, with ``locationInfo`` zones or capabilities changed."""
    found = sku("Standard_B2s")
    zones = changes.pop("zones", None)
    if zones is not None:
        found["locationInfo"][0]["zones"] = zones
    found["capabilities"] = [c | ({"value": changes[c["name"]]} if c["name"] in changes else {})
                             for c in found["capabilities"]] + [
        {"name": k, "value": v} for k, v in changes.items() if k not in {c["name"] for c in found["capabilities"]}]
    return {"value": [found]}


@pytest.mark.parametrize("skus, problem", [
    (b2s(zones=["1", "2"]), "VM size Standard_B2s is not offered in westeurope zone(s) 3 (offered in 1, 2), where "
                            "nodes run (nodes[].zone)"),
    (b2s(zones=[]), "VM size Standard_B2s is not offered in westeurope zone(s) 1, 2, 3 (offered in none), where "
                    "nodes run (nodes[].zone)"),
    (b2s(HyperVGenerations="V1"), "VM size Standard_B2s runs Hyper-V generation(s) V1, not V2 of the image "
                                  "Debian debian-12 12-gen2"),
    (b2s(CpuArchitectureType="Arm64"), "VM size Standard_B2s is Arm64, not x64 of the image Debian debian-12 12-gen2"),
])
def test_preflight_checks_every_constraint_arm_enforces_on_the_size(make_target, arm, skus, problem):
    """Issue 19, defect 4: the size check read `restrictions` only, never `locationInfo[].zones`: a
    size not offered in a node's zone (or a region without zones) passed preflight and failed
    mid-deployment with SkuNotAvailable, after the network and the load balancer existed. The same
    for a size that cannot boot the image (its Hyper-V generation, its CPU architecture)."""
    answer_prerequisites(arm, skus=skus)
    with pytest.raises(MissingPrerequisite) as err:
        make_target().preflight()
    assert problem in str(err.value) and str(err.value).count("\n  - ") == 1, str(err.value)


def test_preflight_without_credentials_says_so_in_one_message_and_sends_nothing(make_target, arm):
    with pytest.raises(MissingPrerequisite) as err:
        make_target(credential=NoCredential()).preflight()
    assert "az login" in str(err.value) and "nothing was created" in str(err.value)
    assert arm.sent() == []


def test_preflight_lists_every_missing_prerequisite_at_once(make_target, spec):
    bare = spec.model_copy(update={"azure": spec.azure.model_copy(update={"admin_cidr": None})})
    target = make_target(spec=bare, subscription_id="11111111-2222-3333-4444-555555555555",
                         which=lambda name: None, credential=NoCredential())
    with pytest.raises(MissingPrerequisite) as err:
        target.preflight()
    text = str(err.value)
    assert "11111111-2222-3333-4444-555555555555 is not in azure.subscription_allow_list" in text
    assert "azure.admin_cidr is not set" in text
    assert "Bicep CLI is not installed" in text and "Azure DevOps agent" in text
    assert "credential was not tried" in text, "no token request leaves the machine before the rest is right"


def test_preflight_names_the_sign_in_when_only_the_credential_is_missing(make_target):
    with pytest.raises(MissingPrerequisite) as err:
        make_target(credential=NoCredential()).preflight()
    assert "az login" in str(err.value) and "not tried" not in str(err.value)


def test_default_credential_skips_managed_identity_unless_asked():
    from deployer.targets.azure.identity import AzureEnv

    assert AzureEnv.from_environ({}).managed_identity is False
    assert AzureEnv.from_environ({"PGHA_AZURE_MANAGED_IDENTITY": "1"}).managed_identity is True
    credential = AzureEnv.from_environ({}).credential()
    assert "ManagedIdentityCredential" not in [type(c).__name__ for c in credential.credentials]


def test_preflight_needs_a_subscription_id(make_target):
    with pytest.raises(MissingPrerequisite, match="AZURE_SUBSCRIPTION_ID is not set"):
        make_target(subscription_id=None, environ={}).preflight()


def test_subscription_id_comes_from_the_environment(make_target):
    assert make_target(subscription_id=None, environ={"AZURE_SUBSCRIPTION_ID": SUB})._subscription_id == SUB


def test_bicep_cli_is_found_as_bicep_or_az_bicep():
    assert bicep.find_cli(lambda name: "/usr/bin/bicep" if name == "bicep" else None) == [
        "/usr/bin/bicep", "build", "--stdout"]
    assert bicep.find_cli(lambda name: "/usr/bin/az" if name == "az" else None) == [
        "/usr/bin/az", "bicep", "build", "--stdout", "--file"]
    assert bicep.find_cli(lambda name: None) is None
    with pytest.raises(MissingPrerequisite, match="install a standalone `bicep`"):
        bicep.cli_compiler(lambda name: None)(bicep.MAIN_BICEP)


@pytest.mark.parametrize("name", ["bicep", "az"])
def test_the_compile_path_runs_the_cli_and_parses_its_stdout(tmp_path, name):
    """`bicep build --stdout FILE` or `az bicep build --stdout --file FILE`, run for real (a fake CLI
    printing the build output of main.bicep, and a warning on stderr): stdout is the template."""
    cli = fake_bicep_cli(tmp_path, name, bicep.MAIN_BICEP)
    compile_ = bicep.cli_compiler(lambda wanted: str(cli) if wanted == name else None)
    assert compile_(bicep.MAIN_BICEP) == load("bicep_build_main.json")
    with pytest.raises(TargetError, match=rf"^compiling {tmp_path}/other.bicep with `{name} .*build --stdout.*` failed: "
                                          r"Error BCP091"):
        compile_(tmp_path / "other.bicep")


def test_the_compile_path_refuses_output_that_is_no_template(tmp_path):
    cli = tmp_path / "bicep"
    cli.write_text("#!/bin/sh\necho 'Bicep CLI version 0.30.23'\n")
    cli.chmod(0o755)
    with pytest.raises(TargetError, match="printed no ARM JSON"):
        bicep.cli_compiler(lambda wanted: str(cli) if wanted == "bicep" else None)(bicep.MAIN_BICEP)


def test_the_recorded_build_output_declares_what_main_bicep_declares():
    """The build output the fakes compile to must not drift from the source: every parameter (type,
    @secure as securestring, default, bounds, allowed values) and output of main.bicep, with their descriptions."""
    pycep = pytest.importorskip("pycep", reason="pycep-parser is a dev dependency")
    source = pycep.BicepParser().parse(file_path=bicep.MAIN_BICEP)
    built = load("bicep_build_main.json")
    assert built["metadata"]["_generator"]["name"] == "bicep" and built["$schema"].endswith("deploymentTemplate.json#")
    bounds = {"min_length": "minLength", "max_length": "maxLength", "min_value": "minValue", "max_value": "maxValue",
              "allowed": "allowedValues"}
    assert set(built["parameters"]) == set(source["parameters"])
    for name, param in source["parameters"].items():
        decorators = {d["type"]: d.get("argument") for d in param["decorators"]}
        expected = {"type": "securestring" if "secure" in decorators else param["type"],
                    "metadata": {"description": decorators["description"]},
                    **{arm: decorators[key] for key, arm in bounds.items() if key in decorators}}
        if isinstance(param.get("default"), (int, str)):
            expected["defaultValue"] = param["default"]
        got = dict(built["parameters"][name])
        if "defaultValue" not in expected:
            got.pop("defaultValue", None)  # an expression, e.g. [resourceGroup().location]
        assert got == expected, name
    assert {k: (v["type"], v["metadata"]["description"]) for k, v in built["outputs"].items()} == {
        k: (v["type"], next(d["argument"] for d in v["decorators"] if d["type"] == "description"))
        for k, v in source["outputs"].items()}


def test_credential_is_default_on_a_laptop_and_federated_in_a_pipeline():
    assert isinstance(AzureEnv.from_environ({}).credential(), DefaultAzureCredential)
    assert isinstance(AzureEnv.from_environ(PIPELINE).credential(), AzurePipelinesCredential)
    half = {k: v for k, v in PIPELINE.items() if k != "SYSTEM_ACCESSTOKEN"}
    with pytest.raises(MissingPrerequisite, match=r"SYSTEM_ACCESSTOKEN: \$\(System.AccessToken\)"):
        AzureEnv.from_environ(half).credential()
    assert "not-a-real-token" not in repr(AzureEnv.from_environ(PIPELINE))


# ----- what-if only -----

def test_what_if_into_an_existing_group_previews_and_creates_nothing(target, arm):
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.lro("POST", f"{DEPLOYMENT}/whatIf", load("what_if_attach.json"))
    lines = target.what_if()
    assert lines[0] == "= NoChange Microsoft.Network/loadBalancers/pgha-lb"
    assert lines[1] == ("~ Modify Microsoft.Network/networkInterfaces/pgha-pg1-nic "
                        "(properties.ipConfigurations[0].properties.loadBalancerBackendAddressPools)")
    assert {m for m, _, _ in arm.sent()} == {"GET", "POST"}, "what-if sends no PUT or DELETE"
    (_, _, body), = arm.sent("POST", "/whatIf")
    assert body["properties"]["mode"] == "Incremental" and body["properties"]["template"] == load("bicep_build_main.json")
    assert parameters_sent(body)["joinBackendPool"] == {"value": False}


def test_what_if_without_the_group_previews_at_subscription_scope(target, arm):
    arm.error("GET", "/resourcegroups/rg-pgha", 404, "ResourceGroupNotFound", "Resource group 'rg-pgha' could not be found.")
    arm.lro("POST", "/providers/Microsoft.Resources/deployments/pgha-plan/whatIf", load("what_if_create.json"))
    lines = target.what_if()
    assert "+ Create Microsoft.Network/loadBalancers/pgha-lb" in lines
    assert "+ Create Microsoft.Compute/virtualMachines/pgha-pg3" in lines and len(lines) == 13
    assert "+ Create Microsoft.Storage/storageAccounts/pgbackrest5f3tcbt2lzcbk/blobServices/default/containers/pgbackrest" \
        in lines, "the backup repository's container"
    assert not arm.sent("PUT") and not arm.sent("DELETE")
    (_, _, body), = arm.sent("POST", "/whatIf")
    group, nested = body["properties"]["template"]["resources"]
    assert group == {"type": "Microsoft.Resources/resourceGroups", "apiVersion": "2022-09-01", "name": "rg-pgha",
                     "location": "westeurope", "tags": EXPECTED_TAGS}
    assert nested["resourceGroup"] == "rg-pgha" and nested["properties"]["template"] == load("bicep_build_main.json")
    assert nested["properties"]["parameters"]["joinBackendPool"] == {"value": False}
    assert body["location"] == "westeurope"


# ----- the staged deploy -----

def answer_deployment(arm, what_if: str):
    arm.lro("POST", f"{DEPLOYMENT}/whatIf", load(what_if))
    arm.async_op("PUT", DEPLOYMENT, {"status": "Succeeded"}, load("deployment_accepted.json"),
                 load("deployment_succeeded.json"))


def test_provision_then_attach_flip_only_the_pool_membership(target, arm, state):
    arm.error("GET", "/resourcegroups/rg-pgha", 404, "ResourceGroupNotFound", "Resource group 'rg-pgha' could not be found.")
    arm.add("PUT", "/resourcegroups/rg-pgha", load("resource_group.json"), status=201)
    answer_deployment(arm, "what_if_create.json")
    answer_keys(arm)
    target.provision()

    (_, _, group), = arm.sent("PUT", "/resourcegroups/rg-pgha?")
    assert group == {"location": "westeurope", "tags": EXPECTED_TAGS}
    order = [(m, u.split("?")[0].rsplit("/", 1)[-1]) for m, u, _ in arm.sent() if m in ("PUT", "POST")]
    assert order == [("PUT", "rg-pgha"), ("POST", "whatIf"), ("PUT", "pgha-main"), ("POST", "listKeys")], \
        "what-if before the deployment; the backup account's key once it exists"
    (_, _, stage1), = arm.sent("PUT", "/deployments/pgha-main?")
    secrets_key = target.secrets.ssh_public_key
    assert parameters_sent(stage1) == bicep_parameters(target.spec, join_pool=False, ssh_public_key=secrets_key,
                                                        tags=EXPECTED_TAGS)
    assert stage1["properties"]["mode"] == "Incremental" and stage1["tags"] == EXPECTED_TAGS
    assert state.data["outputs"]["frontendIp"] == "20.1.2.3" and state.data["tags"] == EXPECTED_TAGS
    assert state.data["outputs"]["frontendFqdn"] == "pgha-5f3tcbt2lzcbk.westeurope.cloudapp.azure.com", "the TLS name"
    known = (state.dir / "known_hosts").read_text().splitlines()
    assert [line.split()[0] for line in known] == ["[20.1.2.3]:50001", "[20.1.2.3]:50002", "[20.1.2.3]:50003"]
    assert (state.dir / "known_hosts").stat().st_mode & 0o777 == 0o600

    answer_deployment(arm, "what_if_attach.json")
    answer_pool(arm)  # pg3 still Down on the replicas rule ...
    answer_pool(arm, replicas="lb_health_primary.json")  # ... then every node Up
    target.attach()
    assert len(arm.sent("GET", "/backendAddressPools/nodes")) == 2, "attach returns once every node is healthy"
    stage1_sent, stage3_sent = [b for _, _, b in arm.sent("PUT", "/deployments/pgha-main?")]
    p1, p3 = parameters_sent(stage1_sent), parameters_sent(stage3_sent)
    assert p1["joinBackendPool"] == {"value": False} and p3["joinBackendPool"] == {"value": True}
    assert {k for k in p1 if p1[k] != p3[k]} == {"joinBackendPool"}, "attach changes the pool membership only"
    assert p3 == bicep_parameters(target.spec, join_pool=True, ssh_public_key=secrets_key, tags=EXPECTED_TAGS)


def test_provision_refuses_a_group_of_the_same_name_it_did_not_create(target, arm):
    foreign = load("resource_group.json") | {"tags": {"owner": "someone-else"}}
    arm.add("GET", "/resourcegroups/rg-pgha", foreign)
    with pytest.raises(TargetError, match="refusing to deploy stack pgha into it: resource group rg-pgha has tags"):
        target.provision()
    assert not arm.sent("PUT") and not arm.sent("POST") and not arm.sent("DELETE")


def test_provision_refuses_a_subscription_off_the_allow_list(make_target, arm):
    with pytest.raises(MissingPrerequisite, match="not in azure.subscription_allow_list"):
        make_target(subscription_id="99999999-0000-0000-0000-000000000000").provision()
    assert arm.sent() == []


def test_deployment_without_the_expected_outputs_is_an_error(target, arm):
    answer_redeploy(arm)
    bare = load("deployment_succeeded.json")
    del bare["properties"]["outputs"]["nsgName"]
    arm.add("PUT", DEPLOYMENT, bare)
    with pytest.raises(TargetError, match="lacks the outputs nsgName"):
        target.provision()


def test_tags_expire_after_the_spec_expiry(target):
    assert target._tags() == EXPECTED_TAGS and NOW.hour == 0 and target.spec.azure.expiry_hours == 8


def test_provision_of_a_stale_stack_restarts_the_vms_it_powered_off(target, arm, state, ssh_answers):
    state.data.update(stopped=["pg2"], isolated=["pg1"])
    answer_redeploy(arm)
    arm.async_op("PUT", DEPLOYMENT, {"status": "Succeeded"}, load("deployment_accepted.json"),
                 load("deployment_succeeded.json"))
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.lro("POST", f"{CMP}/virtualMachines/pgha-pg2/start")
    answer_keys(arm)
    target.provision()
    assert state.data["stopped"] == [] and state.data["isolated"] == [], "the redeploy replaced the NSG's rules"
    assert ssh_answers[-1] == ("20.1.2.3", 50002), "the restarted VM's SSH answers before provision goes on"


@pytest.mark.parametrize("pool, joined", [("backend_pool.json", True), ("backend_pool_empty.json", False), (None, False)])
def test_reprovision_keeps_the_nics_in_the_pool_when_attach_ran(deployed, arm, state, ssh_answers, pool, joined):
    """A stack with one stopped VM is re-provisioned by `up`; deploying it with joinBackendPool=false
    took every NIC out of the pool (an outage of the whole stack until attach). Before attach (an
    empty pool) or without a load balancer yet (404), the NICs stay out."""
    state.data["stopped"] = ["pg2"]
    pool_path = f"{NET}/loadBalancers/pgha-lb/backendAddressPools/nodes"
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    if pool:
        arm.add("GET", pool_path, load(pool))
    else:
        arm.error("GET", pool_path, 404, "NotFound", "Resource pgha-lb not found.")
    arm.add("PUT", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("GET", f"{CMP}/virtualMachines", load("vms_in_group.json"))
    answer_deployment(arm, "what_if_attach.json")
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.lro("POST", f"{CMP}/virtualMachines/pgha-pg2/start")
    answer_keys(arm)
    deployed.provision()
    (_, _, what_if), = arm.sent("POST", "/whatIf")
    (_, _, body), = arm.sent("PUT", "/deployments/pgha-main?")
    assert parameters_sent(what_if)["joinBackendPool"] == parameters_sent(body)["joinBackendPool"] == {"value": joined}
    assert state.data["stopped"] == []
