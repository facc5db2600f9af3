"""Idempotency like Azure Verified Modules: after attach, redeploying the stack changes nothing.

The pipeline runs ``python -m deployer.targets.azure.drift`` after attach and fails on drift; here
the what-if answers show it passing on no change (what-if's ``NoEffect`` noise included) and
failing on a real one.
"""

from __future__ import annotations

import pytest
import yaml
from azure_fakes import DEPLOYMENT, NET, load

from deployer.targets.azure import convert, drift
from deployer.targets.base import TargetError


def answer_drift(arm, what_if: str):
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("GET", f"{NET}/loadBalancers/pgha-lb/backendAddressPools/nodes", load("backend_pool.json"))
    arm.lro("POST", f"{DEPLOYMENT}/whatIf", load(what_if))


def test_an_idempotent_stack_shows_no_drift_with_the_attach_parameters_and_recorded_tags(deployed, arm, state):
    answer_drift(arm, "what_if_no_change.json")
    assert deployed.drift() == [], "NoChange, Ignore and a Modify of NoEffect deltas only are no drift"
    (_, _, body), = arm.sent("POST", "/whatIf")
    parameters = body["properties"]["parameters"]
    assert parameters["joinBackendPool"] == {"value": True}, "attached: the attach parameters"
    assert parameters["tags"] == {"value": state.data["tags"]}, "the recorded expiry, or every tag drifts"
    assert not arm.sent("PUT")


def test_a_real_change_is_drift(deployed, arm):
    """Negative control: someone opened SSH in the portal; the redeploy would change it back."""
    answer_drift(arm, "what_if_drift.json")
    assert deployed.drift() == ["~ Modify Microsoft.Network/networkSecurityGroups/pgha-nsg "
                                "(properties.securityRules[3].properties.sourceAddressPrefix)"]


def noise_delta(path: str, kind: str = "Delete") -> dict:
    vm = "/subscriptions/x/resourceGroups/rg-pgha/providers/Microsoft.Compute/virtualMachines/pgha-pg1"
    return {"properties": {"changes": [{"resourceId": vm, "changeType": "Modify",
                                        "delta": [{"path": path, "propertyChangeType": kind}]}]}}


def test_what_ifs_documented_noise_is_no_drift_and_unsupported_is_not_counted():
    """Issue 19, defect 7: the no-drift fixture passed on a NoEffect delta of numberOfProbes, which
    real what-if uses for read-only properties only; Azure reports a value it assigned itself (the OS
    disk's id) as a Delete delta, and a change it cannot analyse (the OS disk's tags, an extension
    resource) as Unsupported: both were counted as drift. Each ignored path is in ``WHAT_IF_NOISE``
    with its reason; anything else is drift (``what_if_no_change.json`` after attach)."""
    assert convert.drift_lines(load("what_if_no_change.json")) == []
    assert convert.drift_lines(noise_delta("properties.storageProfile.osDisk.managedDisk.id")) == []
    assert convert.drift_lines(noise_delta("properties.storageProfile.osDisk.diskSizeGB")) == [
        "~ Modify Microsoft.Compute/virtualMachines/pgha-pg1 (properties.storageProfile.osDisk.diskSizeGB)"], \
        "a default the Bicep omits is drift: set it there"
    assert all(rtype and path and why for rtype, path, why in convert.WHAT_IF_NOISE)


def test_drift_before_anything_is_deployed_is_an_error(target, arm):
    arm.error("GET", "/resourcegroups/rg-pgha", 404, "ResourceGroupNotFound", "Resource group 'rg-pgha' could not be found.")
    with pytest.raises(TargetError, match="nothing deployed to compare"):
        target.drift()


@pytest.mark.parametrize("what_if, code, said", [("what_if_no_change.json", 0, "No drift: redeploying stack pgha"),
                                                 ("what_if_drift.json", 1, "would make 1 change(s)")])
def test_the_pipeline_entry_point_exits_non_zero_on_drift(deployed, arm, state, spec, tmp_path, monkeypatch, capsys,
                                                          make_target, what_if, code, said):
    """The state and spec as the pipeline restores them; the target's SDK and CLI fakes injected."""
    spec_file = tmp_path / "stack.ci.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    state.spec_path = str(spec_file)
    state.save()
    monkeypatch.setattr(drift, "AzureTarget", lambda loaded, saved: make_target(spec=loaded))
    answer_drift(arm, what_if)
    assert drift.main(["--name", "pgha"]) == code
    assert said in capsys.readouterr().out


def test_the_entry_point_without_a_stack_says_so(state, capsys):
    assert drift.main(["--name", "nosuch"]) == 2
    assert "no Azure stack named 'nosuch'" in capsys.readouterr().err
