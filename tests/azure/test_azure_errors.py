"""Every class of Azure error becomes one TargetError sentence naming the operation and the resource."""

from __future__ import annotations

import re

import pytest
from azure_fakes import CMP, DEPLOYMENT, NET, NoCredential, answer_redeploy, load

from deployer.targets.azure import errors
from deployer.targets.base import MissingPrerequisite, TargetError


def test_401_names_the_credential(deployed, arm):
    arm.error("GET", f"{NET}/networkSecurityGroups/pgha-nsg", 401, "InvalidAuthenticationToken",
              "The access token is invalid.")
    with pytest.raises(TargetError) as err:
        deployed.security_rules()
    assert str(err.value) == ("cannot read NSG pgha-nsg: Azure rejected the credential (401, InvalidAuthenticationToken: "
                              "The access token is invalid.); sign in again or check the service connection")


def test_403_names_the_missing_permission(target, arm):
    arm.error("GET", "/resourcegroups/rg-pgha", 404, "ResourceGroupNotFound", "Resource group 'rg-pgha' could not be found.")
    arm.error("PUT", "/resourcegroups/rg-pgha", 403, "AuthorizationFailed",
              "The client 'x' does not have authorization to perform action 'Microsoft.Resources/subscriptions/resourcegroups/write'.")
    with pytest.raises(TargetError, match=r"^cannot create or update resource group rg-pgha: permission denied \(403, "
                                          r"AuthorizationFailed: .*\); the identity needs Contributor"):
        target.provision()


def test_404_names_what_is_missing(deployed, arm):
    arm.error("GET", f"{NET}/loadBalancers/pgha-lb/backendAddressPools/nodes", 404, "NotFound",
              "Resource /subscriptions/x/resourceGroups/rg-pgha/providers/Microsoft.Network/loadBalancers/pgha-lb not found.")
    with pytest.raises(TargetError, match=r"^cannot read backend pool nodes of load balancer pgha-lb: not found \(404, NotFound: "):
        deployed.backend_pool()


def test_409_names_the_conflict(deployed, arm):
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("GET", f"{NET}/networkSecurityGroups/pgha-nsg", load("nsg.json"))
    arm.error("PUT", f"{NET}/networkSecurityGroups/pgha-nsg", 409, "AnotherOperationInProgress",
              "Another operation on this or dependent resource is in progress.")
    with pytest.raises(TargetError, match=r"^cannot isolate pg1 in NSG pgha-nsg: conflict \(409, AnotherOperationInProgress: "
                                          r"Another operation .*\); another operation may be running"):
        deployed.isolate("pg1")


def test_a_failed_deployment_gives_the_code_and_the_real_cause(target, arm):
    answer_redeploy(arm)
    failed = {"status": "Failed", "error": {
        "code": "DeploymentFailed", "message": "At least one resource deployment operation failed.",
        "details": [{"code": "SkuNotAvailable",
                     "message": "The requested VM size Standard_B2s is not available in westeurope zone 3."}]}}
    arm.async_op("PUT", DEPLOYMENT, failed, accepted=load("deployment_accepted.json"))
    with pytest.raises(TargetError) as err:
        target.provision()
    assert str(err.value) == (
        "deploy deployment pgha-main in rg-pgha failed in Azure: DeploymentFailed: At least one resource deployment "
        "operation failed.; SkuNotAvailable: The requested VM size Standard_B2s is not available in westeurope zone 3.")


def test_a_failed_power_off_names_the_vm(deployed, arm):
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.async_op("POST", f"{CMP}/virtualMachines/pgha-pg2/powerOff", {"status": "Failed", "error": {
        "code": "OperationNotAllowed", "message": "Operation 'powerOff' is not allowed since the VM is being deallocated."}})
    with pytest.raises(TargetError, match=r"^power off VM pgha-pg2 \(pg2\) failed in Azure: OperationNotAllowed: "):
        deployed.crash_vm("pg2")


def test_no_credential_mid_operation_is_a_missing_prerequisite_and_sends_nothing(make_target, arm):
    with pytest.raises(MissingPrerequisite, match="no usable Azure credential: sign in with `az login`"):
        make_target(credential=NoCredential()).provision()
    assert arm.sent() == []


def test_a_node_unknown_to_the_deployment_is_named(deployed):
    with pytest.raises(TargetError, match=r"no node 'pg9' in the deployment outputs \(pg1, pg2, pg3\)"):
        deployed.crash_vm("pg9")


def test_read_backs_before_provision_say_so(target):
    with pytest.raises(TargetError, match="no deployment outputs: run provision first"):
        target.backend_pool()


def test_a_failed_nested_deployment_names_every_innermost_cause(target, arm):
    """Each resource sits in a module (a nested deployment), so ARM puts the real cause three levels
    down; only the first level used to be printed ("ResourceDeploymentFailure ... 'Failed'")."""
    answer_redeploy(arm)
    arm.async_op("PUT", DEPLOYMENT, load("deployment_failed_nested.json"), accepted=load("deployment_accepted.json"))
    with pytest.raises(TargetError) as err:
        target.provision()
    cause = ("InvalidParameter: The property 'securityProfile.encryptionAtHost' is not valid because the "
             "'Microsoft.Compute/EncryptionAtHost' feature is not enabled for this subscription.")
    assert str(err.value) == (
        "deploy deployment pgha-main in rg-pgha failed in Azure: DeploymentFailed: At least one resource deployment "
        "operation failed. Please list deployment operations for details. Please see "
        f"https://aka.ms/arm-deployment-operations for usage details.; pgha-pg1 (securityProfile.encryptionAtHost): "
        f"{cause}; pgha-pg2 (securityProfile.encryptionAtHost): {cause}")


def test_a_failed_what_if_stops_the_provision_before_the_deployment(target, arm):
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("PUT", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("GET", f"{CMP}/virtualMachines", load("vms_in_group.json"))
    arm.lro("POST", f"{DEPLOYMENT}/whatIf", load("what_if_failed.json"))
    with pytest.raises(TargetError, match=r"^preview \(what-if\) deployment pgha-main in rg-pgha failed in Azure "
                                          r"\(status Failed\): InvalidTemplateDeployment: .*; SkuNotAvailable: "):
        target.provision()
    assert not arm.sent("PUT", "/deployments/")


def test_describe_caps_the_causes():
    leaves = [{"code": f"C{i}", "message": "m"} for i in range(7)]
    assert errors.describe({"code": "Top", "message": "t", "details": leaves}) == \
        "Top: t; C0: m; C1: m; C2: m; C3: m; C4: m; and 2 more"


TENANT = "11111111-1111-1111-1111-111111111111"
PIPELINE_ENV = {"SYSTEM_OIDCREQUESTURI": "https://dev.azure.com/contoso/00000000-0000-0000-0000-0000000000bb/_apis/distributedtask/hubs/build/plans/p/jobs/j/oidctoken",
                "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": "22222222-2222-2222-2222-222222222222",
                "AZURESUBSCRIPTION_CLIENT_ID": "33333333-3333-3333-3333-333333333333",
                "AZURESUBSCRIPTION_TENANT_ID": TENANT, "SYSTEM_ACCESSTOKEN": "job-access-token"}


@pytest.fixture
def entra_refuses(arm, monkeypatch):
    """A pipeline job whose service connection's federated credential names another subject: Azure
    DevOps hands out its OIDC token, Entra ID refuses it (AADSTS700213), as the real
    ``AzurePipelinesCredential`` (over MSAL) sees it."""
    for name, value in PIPELINE_ENV.items():
        monkeypatch.setenv(name, value)
    arm.rsps.add("POST", re.compile(re.escape(PIPELINE_ENV["SYSTEM_OIDCREQUESTURI"]) + r"\?.*"), json={"oidcToken": "a.b.c"})
    login = f"https://login.microsoftonline.com/{TENANT}"
    arm.rsps.add("POST", f"{login}/oauth2/v2.0/token", json=load("entra_federated_subject_mismatch.json"), status=400)


REFUSED = ("Entra ID refused the Azure credential: Microsoft Entra ID error '(invalid_client) AADSTS700213: No matching "
           "federated identity record found for presented assertion subject 'sc://contoso/pgha/pgha-azure-wif'.")


def test_a_refused_credential_keeps_entra_ids_reason_in_preflight(make_target, entra_refuses):
    """Issue 19, defect 3: every ClientAuthenticationError became "no usable Azure credential: sign in
    with `az login`...", also when a credential existed and Entra ID refused it; the AADSTS code
    (here a federated subject the service connection does not match) was thrown away."""
    target = make_target(credential=None, environ=dict(PIPELINE_ENV))
    with pytest.raises(MissingPrerequisite) as err:
        target.preflight()
    assert REFUSED in str(err.value) and errors.NO_CREDENTIAL not in str(err.value)
    assert "job-access-token" not in str(err.value)


def test_a_refused_credential_mid_operation_keeps_the_reason_and_sends_nothing_to_arm(make_target, entra_refuses, arm):
    with pytest.raises(MissingPrerequisite, match=re.escape(f"cannot read resource group rg-pgha: {REFUSED}")):
        make_target(credential=None, environ=dict(PIPELINE_ENV)).provision()
    assert not arm.sent(contains="management.azure.com")
