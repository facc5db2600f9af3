"""The rolling restart of outdated Patroni daemons (``rolling.restart_outdated_patroni``) against a
simulated cluster: a restarted daemon runs the release installed on its node, a switchover moves the
leadership. Replicas go first, the leader only after handing over, one member at a time; a daemon that
comes back with the old release stops the apply naming it."""

from __future__ import annotations

import subprocess
import types

import pytest

from deployer import rolling
from deployer.patroni import Member
from deployer.spec import load_spec
from deployer.targets.base import TargetError

SPEC = load_spec()
OLD, NEW = "4.0.7", SPEC.patroni.version


class Cluster:
    """Three members running ``OLD``; ``installed`` is what each node's venv holds."""

    def __init__(self, installed: dict[str, str]):
        self.leader, self.installed = "pg1", installed
        self.running = {n: OLD for n in installed}
        self.steps: list[str] = []

    def members(self, target, timeout=3.0):
        return [Member(n, "", "leader" if n == self.leader else "replica", "running" if n == self.leader else "streaming",
                       0, 1) for n in sorted(self.running)]

    def get(self, target, node, path, timeout=3.0):
        assert path == "/patroni"
        return {"patroni": {"version": self.running[node], "scope": "pgha"}, "state": "running"}

    def post(self, target, node, path, body, password, timeout=120):
        assert (path, node, body["leader"]) == ("/switchover", self.leader, self.leader), (path, node, body)
        self.steps.append(f"switchover {node}->{body['candidate']}")
        self.leader = body["candidate"]
        return "ok"

    def run(self, argv, **kw):
        node = argv[0]
        assert argv[-1].endswith("systemctl restart patroni"), argv
        assert node != self.leader, f"{node} restarted while it leads: an unplanned failover"
        self.steps.append(f"restart {node}")
        self.running[node] = self.installed[node]
        return subprocess.CompletedProcess(argv, 0, "", "")


@pytest.fixture
def cluster(monkeypatch):
    def make(installed):
        sim = Cluster(installed)
        monkeypatch.setattr(rolling.patroni, "cluster", sim.members)
        monkeypatch.setattr(rolling.patroni, "get", sim.get)
        monkeypatch.setattr(rolling.patroni, "post", sim.post)
        monkeypatch.setattr(rolling.subprocess, "run", sim.run)
        return sim
    return make


def target():
    host = lambda node: types.SimpleNamespace(ssh_argv=lambda cmd: [node, " ".join(cmd)])  # noqa: E731
    return types.SimpleNamespace(spec=SPEC, host=host, budgets=types.SimpleNamespace(rejoin_s=5))


def test_replicas_first_then_the_leader_after_a_switchover_one_at_a_time(cluster):
    sim = cluster({n.name: NEW for n in SPEC.nodes})
    said = rolling.restart_outdated_patroni(target(), {"rest_api": "x"}, progress=lambda m: None)
    assert sim.steps == ["restart pg2", "restart pg3", "switchover pg1->pg2", "restart pg1"]
    assert set(sim.running.values()) == {NEW} and len(said) == 3
    assert "pg1's Patroni (the leader, after a switchover to pg2)" in said[-1], said


def test_nothing_restarts_when_every_member_runs_the_specs_release(cluster):
    sim = cluster({n.name: NEW for n in SPEC.nodes})
    sim.running = dict.fromkeys(sim.running, NEW)
    assert rolling.restart_outdated_patroni(target(), {"rest_api": "x"}) == [] and sim.steps == []


def test_a_daemon_back_with_the_old_release_stops_the_apply_naming_it(cluster):
    sim = cluster({"pg1": NEW, "pg2": OLD, "pg3": NEW})  # pg2's install did not take
    with pytest.raises(TargetError, match=rf"pg2's Patroni runs {OLD} after its restart, the spec says {NEW}"):
        rolling.restart_outdated_patroni(target(), {"rest_api": "x"}, progress=lambda m: None)
    assert sim.steps == ["restart pg2"], "nothing else restarts after a failed step"
