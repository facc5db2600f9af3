"""Fixtures of the Azure contract tests: the target wired to a fake ARM (see ``azure_fakes``)."""

from __future__ import annotations

import pytest
import responses
import yaml
from azure_fakes import ADMIN_CIDR, NOW, SUB, Arm, FakeCredential, fake_bicep_cli, load

import deployer.state
import deployer.targets.base
from deployer.spec import DEFAULT_SPEC, parse_spec
from deployer.state import StackState
from deployer.targets.azure.bicep import MAIN_BICEP
from deployer.targets.azure.target import AzureTarget


@pytest.fixture
def arm():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield Arm(rsps)


@pytest.fixture
def spec():
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    raw["azure"].update(admin_cidr=ADMIN_CIDR, subscription_allow_list=[SUB])
    return parse_spec(raw)


@pytest.fixture
def state(tmp_path, monkeypatch) -> StackState:
    monkeypatch.setattr(deployer.state, "STATE_ROOT", tmp_path)
    return StackState(name="pgha", target="azure", spec_path=str(DEFAULT_SPEC))


@pytest.fixture
def bicep_cli(tmp_path):
    """``which`` on a machine whose only Bicep CLI is the fake ``bicep`` (``azure_fakes.FAKE_CLI``)."""
    cli = fake_bicep_cli(tmp_path / "bin", "bicep", MAIN_BICEP)
    return lambda name: str(cli) if name == "bicep" else None


@pytest.fixture
def make_target(spec, state, bicep_cli):
    """An AzureTarget wired to the fakes, compiling through the fake Bicep CLI; keyword arguments
    override any of them."""

    def make(**kwargs) -> AzureTarget:
        options = dict(credential=FakeCredential(), subscription_id=SUB, environ={},
                       client_kwargs={"polling_interval": 0, "retry_total": 0}, which=bicep_cli,
                       keyscan=lambda host, port: f"[{host}]:{port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeHostKey{port}",
                       clock=lambda: NOW)
        options.update(kwargs)
        return AzureTarget(options.pop("spec", spec), state, **options)

    return make


@pytest.fixture
def target(make_target) -> AzureTarget:
    return make_target()


@pytest.fixture
def deployed(target, state) -> AzureTarget:
    """The target after a provision: the deployment's outputs and tags recorded in the state."""
    state.data["outputs"] = {k: v["value"] for k, v in load("deployment_succeeded.json")["properties"]["outputs"].items()}
    state.data["tags"] = load("resource_group.json")["tags"]
    return target


@pytest.fixture
def ssh_answers(monkeypatch) -> list[tuple[str, int]]:
    """SSH of every node answers from the control machine on the second attempt (the base's
    ``wait_for_ssh`` polls ``netprobe.tcp``); the (host, port) of each attempt, in order."""
    attempts: list[tuple[str, int]] = []

    def tcp(host, port, timeout):
        attempts.append((host, port))
        reachable = attempts.count((host, port)) > 1
        return {"reachable": reachable, "seconds": 0.0, "detail": "connected" if reachable else "timed out"}

    monkeypatch.setattr(deployer.targets.base, "tcp", tcp)
    return attempts
