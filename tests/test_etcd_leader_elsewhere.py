"""The etcd leader placement daemon's turn (``ansible/roles/patroni/files/etcd-leader-elsewhere.py``):
it moves etcd's leadership only from the node that leads both Patroni and etcd, to a peer that
answers. Its effect on a live stack is guarded by ``suites/test_patroni.py`` and the seeded defect
``etcd-leader-on-primary``; here, its decisions on given answers."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "ansible/roles/patroni/files/etcd-leader-elsewhere.py"
LOCAL, PEER_DOWN, PEER_UP = "http://10.0.1.4:2379", "http://10.0.1.5:2379", "http://10.0.1.6:2379"
IDS = {LOCAL: 0xA1, PEER_DOWN: 0xB2, PEER_UP: 0xC3}


def _daemon(monkeypatch, *, patroni_leads: bool, etcd_leader: int):
    spec = importlib.util.spec_from_file_location("etcd_leader_elsewhere", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = []

    def etcdctl(endpoint, *args):
        calls.append((endpoint, *args))
        if endpoint == PEER_DOWN:
            raise subprocess.CalledProcessError(1, "etcdctl", stderr="context deadline exceeded")
        if args[0] == "move-leader":
            return "Leadership transferred"
        return json.dumps([{"Status": {"header": {"member_id": IDS[endpoint]}, "leader": etcd_leader}}])
    monkeypatch.setattr(module, "etcdctl", etcdctl)
    monkeypatch.setattr(module, "patroni_leads", lambda url: patroni_leads)
    return module, calls


def test_the_node_leading_both_hands_etcd_to_the_first_peer_that_answers(monkeypatch):
    daemon, calls = _daemon(monkeypatch, patroni_leads=True, etcd_leader=IDS[LOCAL])
    assert daemon.once("http://10.0.1.4:8008/primary", LOCAL, [PEER_DOWN, PEER_UP]) == PEER_UP
    assert calls[-1] == (LOCAL, "move-leader", "c3")


@pytest.mark.parametrize(("patroni_leads", "etcd_leader"), [(False, IDS[LOCAL]), (True, IDS[PEER_UP])])
def test_a_node_leading_only_one_of_them_moves_nothing(monkeypatch, patroni_leads, etcd_leader):
    daemon, calls = _daemon(monkeypatch, patroni_leads=patroni_leads, etcd_leader=etcd_leader)
    assert daemon.once("http://10.0.1.4:8008/primary", LOCAL, [PEER_DOWN, PEER_UP]) is None
    assert not [c for c in calls if "move-leader" in c]


def test_without_an_answering_peer_it_moves_nothing_and_says_so(monkeypatch, capsys):
    daemon, calls = _daemon(monkeypatch, patroni_leads=True, etcd_leader=IDS[LOCAL])
    assert daemon.once("http://10.0.1.4:8008/primary", LOCAL, [PEER_DOWN]) is None
    assert not [c for c in calls if "move-leader" in c]
    assert "no other etcd member answers" in capsys.readouterr().err
