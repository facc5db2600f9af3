"""``deployer down`` without a saved state: on a CI agent it refuses to guess the target unless
``--target`` names one; elsewhere it assumes local and says so."""

from __future__ import annotations

import pytest

import deployer.state
from deployer import cli
from deployer.state import StackState


class Seen:
    """Stands for the registry: records which target ``down`` was handed, finds nothing left."""

    def __init__(self):
        self.targets: list[tuple[str, str]] = []

    def get(self, name):
        def build(spec, state):
            self.targets.append((name, spec.name))
            return name
        return build


@pytest.fixture
def seen(tmp_path, monkeypatch):
    monkeypatch.setattr(deployer.state, "STATE_ROOT", tmp_path)
    for var in cli.AGENT_ENV:
        monkeypatch.delenv(var, raising=False)
    registry = Seen()
    monkeypatch.setattr(cli, "get", registry.get)
    monkeypatch.setattr(cli.stages, "down", lambda state, target: [])
    return registry


@pytest.mark.parametrize("var", ["TF_BUILD", "CI"])
def test_on_a_ci_agent_without_state_or_target_down_refuses_naming_target(seen, monkeypatch, capsys, var):
    monkeypatch.setenv(var, "True")
    assert cli.main(["down", "--name", "ci1"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps lines
    assert "--target" in err and f"{var} is set" in err and "no saved state of stack 'ci1'" in err, err
    assert seen.targets == [], "nothing may be torn down or reported clean on a guessed target"


def test_on_a_ci_agent_the_named_target_is_used_under_the_stack_name(seen, monkeypatch):
    monkeypatch.setenv("TF_BUILD", "True")
    assert cli.main(["down", "--name", "ci1", "--target", "azure"]) == 0
    assert seen.targets == [("azure", "ci1")], "the spec carries the stack's name (Azure's rg-<name>)"


def test_elsewhere_without_state_down_assumes_local_and_says_so(seen, capsys):
    assert cli.main(["down", "--name", "dev1"]) == 0
    assert seen.targets == [("local", "dev1")]
    assert "assuming target local (pass --target to choose another)" in " ".join(capsys.readouterr().err.split())


def test_with_a_saved_state_its_target_is_used_and_a_contradicting_one_refused(seen, monkeypatch, capsys):
    monkeypatch.setenv("CI", "true")
    StackState(name="dev1", target="local", spec_path=str(cli.DEFAULT_SPEC)).save()
    assert cli.main(["down", "--name", "dev1"]) == 0, "a saved state needs no --target, agent or not"
    assert seen.targets == [("local", cli.load_spec(cli.DEFAULT_SPEC).name)]
    assert cli.main(["down", "--name", "dev1", "--target", "azure"]) == 2
    assert "was deployed on target 'local', not 'azure'" in " ".join(capsys.readouterr().err.split())
