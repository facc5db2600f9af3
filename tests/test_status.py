"""``deployer status``: each node's pending restart, in the JSON and in the table."""

from __future__ import annotations

from types import SimpleNamespace

from deployer import cli, status
from deployer.patroni import Member
from deployer.spec import load_spec
from deployer.state import StackState

SPEC = load_spec()


def test_status_shows_which_members_wait_for_a_restart(monkeypatch, capsys):
    members = [Member("pg1", "10.0.1.4", "leader", "running", 0, 1),
               Member("pg2", "10.0.1.5", "replica", "streaming", 0, 1, pending_restart=True)]
    monkeypatch.setattr(status.patroni, "cluster", lambda target: members)
    target = SimpleNamespace(spec=SPEC, backend_pool=lambda: [], frontend=lambda: ("203.0.113.10", 5000))
    data = status.collect(StackState(name="pgha", target="local", spec_path="stack.yaml"), target)
    assert [(n["name"], n["pending_restart"]) for n in data["nodes"]] == [("pg1", False), ("pg2", True), ("pg3", None)]
    monkeypatch.setattr(cli, "console", cli.Console(file=None, width=200, force_terminal=False))
    cli._print_status(data)
    table = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in table.splitlines()
            if line.startswith("│") and "pg" in line.split("│")[1]}
    assert "pending restart" in table and rows == {"pg1": "no", "pg2": "yes", "pg3": "?"}
