"""``Stack.etcd_leader``: the node etcd's members name as their leader, from ``etcdctl`` answers;
``Stack.move_etcd_leader``: the ``move-leader`` it sends."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from deployer.spec import load_spec
from deployer.stack import Stack

SPEC = load_spec()
MEMBERS = {"members": [{"ID": 11, "name": "pg1"}, {"ID": 22, "name": "pg2"}, {"ID": 33, "name": "pg3"}]}


def _stack(leaders: list[int]) -> tuple[Stack, list]:
    stack, asked = Stack.__new__(Stack), []
    stack.spec, stack.target = SPEC, SimpleNamespace(vnet_node=lambda: "pg3")

    def etcdctl(node, *args, endpoints=None, parse=True):
        asked.append((node, args, endpoints))
        if args == ("member", "list"):
            return MEMBERS
        return [{"Status": {"header": {"member_id": i}} | ({"leader": leader} if leader else {})}
                for i, leader in enumerate(leaders)]
    stack.etcdctl = etcdctl
    return stack, asked


def test_the_leader_every_member_names_is_mapped_to_its_node():
    stack, asked = _stack([22, 22, 22])
    assert stack.etcd_leader() == "pg2"
    endpoints = ",".join(f"https://{n.address}:{SPEC.ports.etcd_client}" for n in SPEC.nodes)
    assert asked[-1] == ("pg3", ("endpoint", "status"), endpoints)


@pytest.mark.parametrize("leaders", [[22, 33, 22], [44, 44, 44], [0, 0, 0], [22, 0, 22]])
def test_members_that_disagree_name_an_unknown_member_or_know_none_give_no_leader(leaders):
    """0: etcd's JSON leaves ``leader`` out while a member knows no leader (an election)."""
    assert _stack(leaders)[0].etcd_leader() is None


def test_moving_the_leader_sends_the_members_id_in_hex_to_every_endpoint():
    stack, asked = _stack([22, 22, 22])
    stack.move_etcd_leader("pg3")
    endpoints = ",".join(f"https://{n.address}:{SPEC.ports.etcd_client}" for n in SPEC.nodes)
    assert asked[-1] == ("pg3", ("move-leader", "21"), endpoints)


def test_moving_the_leader_where_it_is_sends_nothing():
    stack, asked = _stack([22, 22, 22])
    stack.move_etcd_leader("pg2")
    assert not [a for a in asked if a[1][0] == "move-leader"]
