"""The backup repository on the Azure target (issue 18): the storage account the deployment creates,
its blob endpoint from the deployment's outputs, and its key, read with ``StorageAccounts_ListKeys``
(``fixtures/storage_account_keys.json``) into the state directory, mode 0600, and never logged."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from azure_fakes import ACCOUNT, DEPLOYMENT, GROUP, SUB, answer_keys, answer_redeploy, load
from test_azure_tls import _run

from deployer.targets.azure import backup
from deployer.targets.base import TargetError

KEY1 = load("storage_account_keys.json")["keys"][0]["value"]
HOST = "pgbackrest5f3tcbt2lzcbk.blob.core.windows.net"


def stored(state) -> dict:
    return json.loads((state.dir / backup.KEY_FILE).read_text())


def test_provision_stores_key1_mode_0600_and_the_repository_is_read_from_there(target, arm, state, ssh_answers,
                                                                               caplog):
    answer_redeploy(arm)
    arm.async_op("PUT", DEPLOYMENT, {"status": "Succeeded"}, load("deployment_accepted.json"),
                 load("deployment_succeeded.json"))
    answer_keys(arm)
    with caplog.at_level(logging.DEBUG):
        target.provision()
        (_, url, _), = arm.sent("POST", "/listKeys")
        assert f"{ACCOUNT}/listKeys?".lower() in url.lower()
        assert (state.dir / backup.KEY_FILE).stat().st_mode & 0o777 == 0o600
        assert stored(state) == {"account": "pgbackrest5f3tcbt2lzcbk", "key": KEY1}
        sent = len(arm.sent())
        repo = target.backup_repository()
    assert len(arm.sent()) == sent, "the repository is read from the state directory, not from Azure"
    assert (repo.host, repo.port, repo.uri_style, repo.account, repo.container, repo.key, repo.ca_file, repo.address) \
        == (HOST, 443, "host", "pgbackrest5f3tcbt2lzcbk", "pgbackrest", KEY1, "", "")
    assert repo.container == target.spec.backup.container and repo.url == f"https://{HOST}:443"
    assert "backup repository: container pgbackrest of storage account pgbackrest5f3tcbt2lzcbk" in caplog.text
    assert KEY1 not in caplog.text and KEY1 not in repr(repo), "the key is never logged or shown"


def test_without_a_stored_key_the_repository_reads_it_once_from_azure(deployed, arm, state):
    """A state directory from before the repository (or one whose key file is for another account,
    as after a new resource group) has none for this account: ListKeys once, then stored."""
    (state.dir / backup.KEY_FILE).parent.mkdir(parents=True)
    (state.dir / backup.KEY_FILE).write_text(json.dumps({"account": "pgbackrestother", "key": "old"}))
    answer_keys(arm)
    assert deployed.backup_repository().key == KEY1
    assert deployed.backup_repository().key == KEY1
    assert len(arm.sent("POST", "/listKeys")) == 1 and stored(state)["key"] == KEY1


def test_no_repository_when_the_spec_turns_backups_off(make_target, spec, arm, state):
    off = spec.model_copy(update={"backup": spec.backup.model_copy(update={"enabled": False})})
    state.data["outputs"] = {k: v["value"] for k, v in load("deployment_succeeded.json")["properties"]["outputs"].items()}
    with pytest.raises(TargetError, match=r"backup\.enabled: false"):
        make_target(spec=off).backup_repository()
    assert arm.sent() == []


def test_provision_with_backups_off_reads_no_key(make_target, spec, arm, state, ssh_answers):
    off = spec.model_copy(update={"backup": spec.backup.model_copy(update={"enabled": False})})
    outputs = load("deployment_succeeded.json")
    outputs["properties"]["outputs"].update(backupAccountName={"type": "String", "value": ""},
                                            backupBlobHost={"type": "String", "value": ""})
    answer_redeploy(arm)
    arm.async_op("PUT", DEPLOYMENT, {"status": "Succeeded"}, load("deployment_accepted.json"), outputs)
    make_target(spec=off).provision()
    (_, _, body), = arm.sent("PUT", "/deployments/pgha-main?")
    assert body["properties"]["parameters"]["backupEnabled"] == {"value": False}
    assert not arm.sent("POST", "/listKeys") and not (state.dir / backup.KEY_FILE).exists()


@pytest.mark.parametrize("outputs", [{}, {"backupAccountName": "", "backupBlobHost": ""}])
def test_outputs_without_the_account_ask_for_a_redeploy(deployed, arm, state, outputs):
    """Outputs recorded before the repository existed (or by a deployment with backups off)."""
    for name in ("backupAccountName", "backupBlobHost"):
        state.data["outputs"].pop(name)
    state.data["outputs"].update(outputs)
    with pytest.raises(TargetError, match=r"name no backup storage account .* `deployer up --force provision`"):
        deployed.backup_repository()
    assert arm.sent() == []


def test_a_listkeys_refusal_names_the_account_and_stores_nothing(deployed, arm, state):
    arm.error("POST", f"{ACCOUNT}/listKeys", 403, "AuthorizationFailed", "The client does not have authorization "
              "to perform action 'Microsoft.Storage/storageAccounts/listKeys/action'.")
    with pytest.raises(TargetError, match=r"^cannot list the keys of storage account pgbackrest5f3tcbt2lzcbk: "
                                          r"permission denied \(403, AuthorizationFailed"):
        deployed.backup_repository()
    assert not (state.dir / backup.KEY_FILE).exists()


def test_an_account_without_key1_is_an_error_naming_no_key_value(deployed, arm, state):
    keys = load("storage_account_keys.json")
    del keys["keys"][0]
    arm.add("POST", f"{ACCOUNT}/listKeys", keys)
    with pytest.raises(TargetError, match=r"lists no key1 \(ListKeys named \['key2'\]\)") as raised:
        deployed.backup_repository()
    assert keys["keys"][0]["value"] not in str(raised.value)
    assert not (state.dir / backup.KEY_FILE).exists()


def test_teardown_removes_the_stored_key_with_the_group(deployed, arm, state):
    (state.dir / backup.KEY_FILE).parent.mkdir(parents=True)
    (state.dir / backup.KEY_FILE).write_text(json.dumps({"account": "pgbackrest5f3tcbt2lzcbk", "key": KEY1}))
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.lro("DELETE", "/resourcegroups/rg-pgha")
    deployed.teardown()
    assert not (state.dir / backup.KEY_FILE).exists(), "the account went with its group"


def test_the_pipeline_carries_the_key_between_stages_encrypted_and_private(deployed, arm, state, tmp_path_factory):
    """The key lives in the state directory, which the pipeline's stages pass on as one encrypted
    artifact (save-state.yml, restore-state.yml): it comes back byte for byte and still 0600, is not
    in the artifact in clear, and neither step prints it."""
    answer_keys(arm)
    deployed.backup_repository()
    agent = tmp_path_factory.mktemp("agent")
    macros = {"Build.ArtifactStagingDirectory": str(agent / "staging"), "Build.BuildId": "7",
              "Pipeline.Workspace": str(agent / "workspace"), "pgha-state-key": "not-a-real-state-key"}
    saved = _run("save-state.yml", "Encrypt the deployer state for the next stages",
                 {**macros, "stateRoot": str(state.dir.parent)}, {})
    assert saved.returncode == 0, saved.stderr
    assert KEY1.encode() not in (agent / "staging" / "state" / "state.tar.enc").read_bytes()
    shutil.copytree(agent / "staging" / "state", agent / "workspace" / "state-7-2-Configure-1")
    restored = _run("restore-state.yml", "Restore the deployer state", {**macros, "stateRoot": str(agent / "next")}, {})
    assert restored.returncode == 0, restored.stderr
    again = agent / "next" / state.name / backup.KEY_FILE
    assert again.read_bytes() == (state.dir / backup.KEY_FILE).read_bytes() and again.stat().st_mode & 0o777 == 0o600
    assert KEY1 not in saved.stdout + saved.stderr + restored.stdout + restored.stderr


OWN_SUBNET = load("storage_account.json")["properties"]["networkAcls"]["virtualNetworkRules"][0]["id"]


def _subnets(body: dict) -> list[str]:
    return [r["id"] for r in body["properties"]["networkAcls"]["virtualNetworkRules"]]


@pytest.fixture
def reader(make_target, spec, deployed):
    """Another Azure stack (``pitr``, in ``rg-pitr``) that restores from this one's repository."""
    return make_target(spec=spec.model_copy(update={"name": "pitr"}))


def test_another_stacks_subnet_is_admitted_for_the_block_then_withdrawn(deployed, reader, arm, state):
    arm.add("GET", GROUP, load("resource_group.json"))
    answer_keys(arm)
    arm.add("GET", ACCOUNT, load("storage_account.json"))
    arm.add("PATCH", ACCOUNT, load("storage_account.json"))
    assert reader.subnet_id.startswith(f"/subscriptions/{SUB}/resourceGroups/rg-pitr/") and reader.subnet_id.endswith(
        "/virtualNetworks/pgha-vnet/subnets/nodes") and deployed.subnet_id == OWN_SUBNET
    with deployed.repository_access(reader, "pg1") as repo:
        (_, _, admitted), = arm.sent("PATCH", "storageAccounts")
        assert _subnets(admitted) == [OWN_SUBNET, reader.subnet_id]
        assert admitted["properties"]["networkAcls"]["defaultAction"] == "Deny", "nothing else of the rules changes"
        assert (repo.host, repo.ca_file, repo.address) == (HOST, "", ""), "the nodes' own endpoint, by DNS"
    (_, _, _), (_, _, withdrawn) = arm.sent("PATCH", "storageAccounts")
    assert _subnets(withdrawn) == [OWN_SUBNET]


def test_the_admission_is_withdrawn_when_the_restore_fails(deployed, reader, arm):
    arm.add("GET", GROUP, load("resource_group.json"))
    answer_keys(arm)
    arm.add("GET", ACCOUNT, load("storage_account.json"))
    arm.add("PATCH", ACCOUNT, load("storage_account.json"))
    with pytest.raises(RuntimeError, match="bootstrap failed"), deployed.repository_access(reader, "pg1"):
        raise RuntimeError("bootstrap failed")
    assert [_subnets(body) for _, _, body in arm.sent("PATCH", "storageAccounts")] == [
        [OWN_SUBNET, reader.subnet_id], [OWN_SUBNET]]


def test_a_subnet_admitted_already_is_left_as_it_is(deployed, arm):
    arm.add("GET", GROUP, load("resource_group.json"))
    answer_keys(arm)
    arm.add("GET", ACCOUNT, load("storage_account.json"))
    with deployed.repository_access(deployed, "pg1"):
        pass
    assert not arm.sent("PATCH")


def test_a_stack_of_another_target_cannot_read_the_repository(deployed):
    from deployer.stack import Stack
    from deployer.state import StackState

    local = Stack(deployed.spec, StackState(name="loc", target="local", spec_path="stack.yaml")).target
    with pytest.raises(TargetError, match="target local cannot read an Azure stack's repository"):
        with deployed.repository_access(local, "pg1"):
            pass
