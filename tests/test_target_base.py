"""The shared plumbing of the Target contract: derived capabilities, probe dispatch, the vnet
vantage, fault bookkeeping in the state. Exercised through a minimal target that records calls."""

from __future__ import annotations

import pytest

import deployer.state
from deployer.spec import load_spec
from deployer.state import StackState
from deployer.targets import TARGETS, get
from deployer.targets.base import Target, TargetError

SPEC = load_spec()


class Recorder(Target):
    """Implements only what is abstract; probes answer where they were asked from."""

    name = "recorder"
    preflight = provision = attach = teardown = lambda self: None
    is_up = lambda self: True  # noqa: E731
    hosts = security_rules = backend_pool = leftovers = lambda self: []
    ansible_vars = lambda self: {}  # noqa: E731
    resolve_source = lambda self, source: (source,)  # noqa: E731
    frontend = lambda self: ("203.0.113.10", 5000)  # noqa: E731
    vantage = lambda self: []  # noqa: E731

    def _probe_from_internet(self, address, port, timeout):
        return {"reachable": True, "seconds": 0.01, "detail": f"internet->{address}:{port}"}

    def _probe_from_node(self, node, address, port, timeout):
        return {"reachable": False, "seconds": 0.02, "detail": f"{node}->{address}:{port}"}


class Crasher(Recorder):
    def crash_vm(self, node):
        pass

    def start_vm(self, node):
        pass


class HalfIsolator(Recorder):
    def isolate(self, node):  # no heal: a fault without its heal is no capability
        pass


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setattr(deployer.state, "STATE_ROOT", tmp_path)
    return StackState(name="pgha", target="recorder", spec_path="stack.yaml")


def test_capabilities_are_derived_from_the_fault_pairs_a_target_implements():
    assert Recorder.capabilities == frozenset()
    assert Crasher.capabilities == {"crash_vm"}
    assert HalfIsolator.capabilities == frozenset(), "isolate without heal must not count"
    assert get("local").capabilities == {"crash_vm", "isolate", "lb_counters", "neighbour"}


def test_registry_names_every_target_and_refuses_unknown_ones():
    assert set(TARGETS) == {"local", "azure"}
    with pytest.raises(TargetError, match="unknown target 'gcp'; known: azure, local"):
        get("gcp")


def test_probe_dispatches_on_the_source_and_resolves_node_names(state):
    target = Recorder(SPEC, state)
    assert target.probe("internet", "pg2", 5432).detail == "internet->10.0.1.5:5432"
    assert target.probe("pg1", "10.0.1.6", 2379).detail == "pg1->10.0.1.6:2379"
    assert target.probe("vnet", "pg1", 8008).detail == "pg2->10.0.1.4:8008", "vnet is a node other than dst"
    with pytest.raises(TargetError, match="unknown probe source 'mars'"):
        target.probe("mars", "pg1", 22)
    with pytest.raises(TargetError, match="no node 'pg9'"):
        target.patroni_url("pg9")


def test_management_probes_from_this_process(state):
    result = Recorder(SPEC, state).probe("management", "127.0.0.1", 9, timeout=0.5)
    assert result.src == "management" and not result.reachable and result.detail


def test_the_vnet_vantage_avoids_faulted_nodes_and_the_state_remembers_them(state):
    target = Recorder(SPEC, state)
    target._mark("isolated", "pg1", True)
    target._mark("stopped", "pg2", True)
    seen = StackState.load("pgha").data
    assert (seen["isolated"], seen["stopped"]) == (["pg1"], ["pg2"]), "a second process sees faults"
    assert [(e["key"], e["heal"]) for e in seen["journal"]] == [("isolated:pg1", [["target.heal", "pg1"]]),
                                                                ("stopped:pg2", [["target.start_vm", "pg2"]])]
    assert target.vnet_node(avoid="pg2") == "pg3"
    with pytest.raises(TargetError, match="every other node is isolated or stopped"):
        target.vnet_node(avoid="pg3")
    target._mark("isolated", "pg1", False)
    assert target.faulted("isolated") == [] and target.vnet_node(avoid="pg3") == "pg1"
    assert [e["key"] for e in StackState.load("pgha").data["journal"]] == ["stopped:pg2"], "healed: out of the journal"


def test_a_target_without_a_fault_says_so(state):
    with pytest.raises(TargetError, match="target recorder cannot crash a VM"):
        Recorder(SPEC, state).crash_vm("pg1")
    with pytest.raises(TargetError, match="has no what-if preview"):
        Recorder(SPEC, state).what_if()
