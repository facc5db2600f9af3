"""``deployer up --target azure --what-if`` end to end through the CLI, against the fake ARM."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from azure_fakes import ADMIN_CIDR, DEPLOYMENT, SUB, FakeCredential, NoCredential, answer_prerequisites, fake_bicep_cli, load

import deployer.state
from deployer import cli
from deployer.spec import DEFAULT_SPEC
from deployer.targets.azure import bicep
from deployer.targets.azure.identity import AzureEnv


FIND_CLI = bicep.find_cli


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """This machine: a state root of its own, no Azure variables, and no Bicep CLI."""
    monkeypatch.setattr(deployer.state, "STATE_ROOT", tmp_path / "state")
    for var in ("AZURE_SUBSCRIPTION_ID", "SYSTEM_OIDCREQUESTURI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(bicep, "find_cli", lambda which=None: None)
    return tmp_path


def test_what_if_without_credentials_fails_with_one_message_and_creates_nothing(machine, monkeypatch, arm, capsys):
    monkeypatch.setattr(AzureEnv, "credential", lambda self: NoCredential())
    assert cli.main(["up", "--target", "azure", "--what-if"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "azure preflight failed, nothing was created" in err
    assert "AZURE_SUBSCRIPTION_ID is not set" in err and "credential was not tried" in err
    assert arm.sent() == [] and not (machine / "state").exists()


@pytest.fixture
def signed_in(machine, monkeypatch, arm) -> Path:
    """A spec file allowing the fake subscription, that subscription (ready for the stack) and a
    credential in the environment, and a Bicep CLI that compiles to the recorded template; the
    spec file."""
    answer_prerequisites(arm)
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    raw["azure"].update(admin_cidr=ADMIN_CIDR, subscription_allow_list=[SUB])
    spec_file = machine / "stack.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    monkeypatch.setattr(AzureEnv, "credential", lambda self: FakeCredential())
    cli = fake_bicep_cli(machine / "bin", "bicep", bicep.MAIN_BICEP)
    monkeypatch.setattr(bicep, "find_cli", lambda which=None: FIND_CLI(lambda name: str(cli) if name == "bicep" else None))
    return spec_file


def test_what_if_with_a_fake_subscription_prints_the_planned_changes(signed_in, arm, capsys):
    arm.error("GET", "/resourcegroups/rg-pgha", 404, "ResourceGroupNotFound", "Resource group 'rg-pgha' could not be found.")
    arm.add("POST", "/providers/Microsoft.Resources/deployments/pgha-plan/whatIf", load("what_if_create.json"))
    assert cli.main(["up", "--target", "azure", "--spec", str(signed_in), "--what-if"]) == 0
    err = capsys.readouterr().err
    assert "+ Create Microsoft.Network/loadBalancers/pgha-lb" in err
    assert not arm.sent("PUT") and not arm.sent("DELETE") and DEPLOYMENT not in str(arm.sent())


def test_a_failed_what_if_exits_non_zero_with_the_cause(signed_in, arm, capsys):
    """ARM answers a what-if it ran and failed with HTTP 200 and ``status: Failed``: that is an error
    (it used to print nothing and exit 0, so the pipeline's Provision went on)."""
    arm.error("GET", "/resourcegroups/rg-pgha", 404, "ResourceGroupNotFound", "Resource group 'rg-pgha' could not be found.")
    arm.lro("POST", "/providers/Microsoft.Resources/deployments/pgha-plan/whatIf", load("what_if_failed.json"))
    assert cli.main(["up", "--target", "azure", "--spec", str(signed_in), "--what-if"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "preview (what-if) deployment pgha-main in rg-pgha failed in Azure (status Failed): InvalidTemplateDeployment" in err
    assert "SkuNotAvailable: The requested VM size" in err
    assert not arm.sent("PUT")
