"""The stack's resource group and its ARM deployment of ``bicep/main.bicep``.

The group ``rg-<stack>`` carries the tags ``stack``, ``expires`` and ``created-by``; a group of that
name without them was not created by the deployer and is never deployed into, faulted or deleted
(``refuse_foreign``). A deployment is previewed with what-if first, its changes logged, then run
incrementally; its outputs are checked against ``OUTPUTS``. Without the group yet, the preview runs
at subscription scope over a wrapper that creates the group and deploys into it.

Every function takes the SDK clients (``clients.Clients``) and the names it acts on; none keeps state.
"""

from __future__ import annotations

import datetime
import logging

from azure.core.exceptions import ResourceNotFoundError

from deployer.targets.azure import convert
from deployer.targets.azure.clients import Clients, rest
from deployer.targets.azure.errors import azure_errors, describe
from deployer.targets.base import TargetError

log = logging.getLogger("deployer.azure")

CREATED_BY = "pgha-deployer"
#: The outputs of ``bicep/main.bicep`` the target reads.
OUTPUTS = ("nodes", "frontendIp", "frontendFqdn", "loadBalancerName", "backendPoolName", "nsgName", "vnetName",
           "backupAccountName", "backupBlobHost")
#: API version of the resource group and nested deployment in the subscription-scope wrapper.
WRAPPER_API = "2022-09-01"


def tags(stack: str, expiry_hours: int, now: datetime.datetime) -> dict[str, str]:
    """The tags of the group and of every resource in it; ``expires`` = now + ``expiry_hours``."""
    expires = now + datetime.timedelta(hours=expiry_hours)
    return {"stack": stack, "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"), "created-by": CREATED_BY}


def group(az: Clients, rg: str) -> dict | None:
    """The resource group as ARM reports it, or None when it does not exist."""
    with azure_errors("read", f"resource group {rg}"):
        try:
            return rest(az.resources.resource_groups.get(rg))
        except ResourceNotFoundError:
            return None


def ours(found: dict, stack: str) -> bool:
    """Whether a resource (or group) as ARM reports it carries the tags the deployer gives ``stack``'s."""
    have = found.get("tags") or {}
    return have.get("created-by") == CREATED_BY and have.get("stack") == stack


def refuse_foreign(found: dict, rg: str, stack: str, operation: str) -> None:
    """TargetError unless the group's tags say the deployer created it for ``stack``."""
    have = found.get("tags") or {}
    if not ours(found, stack):
        raise TargetError(f"refusing to {operation}: resource group {rg} has tags {have or '{}'}, not "
                          f"created-by={CREATED_BY} and stack={stack}, so the deployer did not create it")


def create_group(az: Clients, rg: str, location: str, group_tags: dict) -> None:
    with azure_errors("create or update", f"resource group {rg}"):
        az.resources.resource_groups.create_or_update(rg, {"location": location, "tags": group_tags})


def wrapper(rg: str, name: str, location: str, template: dict, parameters: dict, group_tags: dict) -> dict:
    """A subscription-scope template: the resource group, then ``template`` deployed into it."""
    group_id = f"[subscriptionResourceId('Microsoft.Resources/resourceGroups', '{rg}')]"
    return {
        "$schema": "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [
            {"type": "Microsoft.Resources/resourceGroups", "apiVersion": WRAPPER_API, "name": rg,
             "location": location, "tags": group_tags},
            {"type": "Microsoft.Resources/deployments", "apiVersion": WRAPPER_API, "name": name,
             "resourceGroup": rg, "dependsOn": [group_id],
             "properties": {"mode": "Incremental", "expressionEvaluationOptions": {"scope": "inner"},
                            "template": template, "parameters": parameters}},
        ],
    }


def what_if(az: Clients, rg: str, name: str, template: dict, parameters: dict, *,
            new_group: tuple[str, str, dict] | None = None) -> dict:
    """What deploying ``template`` would change: the what-if result (REST JSON), its changes logged
    one az-style line per resource (``convert.what_if_lines``).
    ``new_group`` = (plan deployment name, location, tags) previews at subscription scope through
    ``wrapper``, for a group that does not exist yet. Sends no PUT. A what-if that ARM ran and
    failed (HTTP 200, ``status: Failed`` and an ``error``) raises TargetError with its causes."""
    props = {"mode": "Incremental", "template": template, "parameters": parameters}
    where = f"deployment {name} in {rg}"
    with azure_errors("preview (what-if)", where):
        if new_group is None:
            result = az.deployments.begin_what_if(rg, name, {"properties": props}).result()
        else:
            plan, location, group_tags = new_group
            body = {"location": location, "properties": {
                "mode": "Incremental", "template": wrapper(rg, name, location, template, parameters, group_tags)}}
            result = az.deployments.begin_what_if_at_subscription_scope(plan, body).result()
    body = rest(result)
    if body.get("error") or body.get("status", "Succeeded") != "Succeeded":
        raise TargetError(f"preview (what-if) {where} failed in Azure (status {body.get('status')}): "
                          f"{describe(body.get('error') or {})}")
    lines = convert.what_if_lines(body)
    log.info("what-if for %s: %d change(s)%s", where, len(lines), "".join(f"\n  {line}" for line in lines))
    return body


def deploy(az: Clients, rg: str, name: str, template: dict, parameters: dict, deployment_tags: dict) -> dict:
    """What-if, then the incremental deployment; its outputs (``{name: value}``), every one of
    ``OUTPUTS`` present (TargetError otherwise)."""
    what_if(az, rg, name, template, parameters)
    where = f"deployment {name} in {rg}"
    with azure_errors("deploy", where):
        result = rest(az.deployments.begin_create_or_update(
            rg, name, {"properties": {"mode": "Incremental", "template": template, "parameters": parameters},
                       "tags": deployment_tags}).result())
    outputs = {k: v.get("value") for k, v in (result.get("properties", {}).get("outputs") or {}).items()}
    missing = [k for k in OUTPUTS if k not in outputs]
    if missing:
        raise TargetError(f"{where} succeeded but lacks the outputs {', '.join(missing)}: check bicep/main.bicep")
    log.info("%s succeeded (joinBackendPool=%s): frontend %s (%s), nodes %s", where,
             parameters["joinBackendPool"]["value"], outputs["frontendIp"], outputs["frontendFqdn"],
             ", ".join(f"{n['name']}={n['privateIp']}" for n in outputs["nodes"]))
    return outputs


def delete_group(az: Clients, rg: str) -> None:
    """Delete the group and wait for it; a group already gone is not an error."""
    with azure_errors("delete", f"resource group {rg}"):
        try:
            az.resources.resource_groups.begin_delete(rg).result()
        except ResourceNotFoundError:
            pass


def leftovers(az: Clients, rg: str, found: dict) -> list[str]:
    """The group (``found``) and every resource still listed in it, one line each; empty on a 404."""
    state = found.get("properties", {}).get("provisioningState", "?")
    lines = [f"Microsoft.Resources/resourceGroups {rg} (provisioningState {state})"]
    with azure_errors("list the resources of", f"resource group {rg}"):
        try:
            return lines + [f"{r.type} {r.name}" for r in az.resources.resources.list_by_resource_group(rg)]
        except ResourceNotFoundError:
            return []
