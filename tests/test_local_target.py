"""Local target pieces that need no root: preflight, the load balancer's config and read-back."""

from __future__ import annotations

import collections

import pytest

from deployer.spec import load_spec
from deployer.state import StackState
from deployer.targets.base import MissingPrerequisite
from deployer.targets.local import lb, target as local
from deployer.targets.local.network import Layout

SPEC = load_spec()


def test_preflight_names_every_missing_prerequisite_and_creates_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(local.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(local.shutil, "which", lambda tool: None if tool == "systemd-nspawn" else f"/usr/bin/{tool}")
    Usage = collections.namedtuple("Usage", "total used free")
    monkeypatch.setattr(local.shutil, "disk_usage", lambda path: Usage(10 * 2**30, 9 * 2**30, 2**29))
    monkeypatch.setattr(local, "IMAGE_CACHE", tmp_path / "cache" / "images")
    state = StackState(name="pgha", target="local", spec_path="stack.yaml")
    with pytest.raises(MissingPrerequisite) as err:
        local.LocalTarget(SPEC, state).preflight()
    text = str(err.value)
    assert "run as root" in text and "systemd-container" in text and "0.5 GiB free" in text
    assert text.endswith("Nothing was created.")
    assert list(tmp_path.iterdir()) == [], "preflight must not create directories"


def test_long_stack_names_are_refused_for_interface_names(monkeypatch):
    state = StackState(name="averylongname", target="local", spec_path="stack.yaml")
    with pytest.raises(MissingPrerequisite, match="too long for interface names"):
        local.LocalTarget(SPEC, state).preflight()


def test_lb_config_has_the_spec_ports_and_an_empty_pool(tmp_path):
    config = lb.render_config(SPEC, "203.0.113.10", tmp_path)
    assert "bind 203.0.113.10:5000" in config and "bind 203.0.113.10:5001" in config
    assert "option httpchk GET /health" in config
    backend = config.split(f"backend {lb.BACKEND}")[1]
    assert "server " not in backend, "the pool starts empty; members are added at stage 3"


@pytest.mark.parametrize("behaviour", ["AllProbedUp", "AllProbedDown"])
def test_lb_config_sends_to_every_member_only_while_the_pool_is_down_with_all_probed_up(tmp_path, behaviour):
    spec = SPEC.model_copy(update={"load_balancer": SPEC.load_balancer.model_copy(
        update={"no_healthy_backends": behaviour})})
    config = lb.render_config(spec, "203.0.113.10", tmp_path)
    frontend = config.split("frontend public")[1].split("\nbackend")[0]
    up = behaviour == "AllProbedUp"
    assert ("use_backend nodes_all if { nbsrv(nodes) eq 0 }" in frontend) == up
    assert (f"backend {lb.ALL_BACKEND}" in config) == up
    if up:
        assert "httpchk" not in config.split(f"\nbackend {lb.ALL_BACKEND}")[1], "the all-members backend is unchecked"


def test_lb_counts_each_members_connections_through_both_backends(monkeypatch, tmp_path):
    header = "# pxname,svname,status,addr,stot\n"
    rows = "nodes,pg1,UP,10.0.1.4:0,7\nnodes,pg2,DOWN,10.0.1.5:0,3\nnodes_all,pg1,UP,10.0.1.4:0,2\nnodes,BACKEND,UP,,10\n"
    monkeypatch.setattr(lb, "admin", lambda rundir, cmd: header + rows)
    assert lb.connections(SPEC, tmp_path) == {"pg1": 9, "pg2": 3}


def test_lb_members_read_back_from_show_stat(monkeypatch, tmp_path):
    header = "# pxname,svname,status,addr,check_status\n"
    rows = ("public,FRONTEND,OPEN,,\nnodes,pg3,DOWN,10.0.1.6:0,L4TOUT\nnodes,pg1,UP,10.0.1.4:0,L7OK\n"
            "nodes,pg2,UP 1/2,10.0.1.5:0,L7STS\nnodes,BACKEND,UP,,\n")
    monkeypatch.setattr(lb, "admin", lambda rundir, cmd: header + rows)
    assert [(m.node, m.address, m.healthy) for m in lb.members(SPEC, tmp_path)] == [
        ("pg1", "10.0.1.4", True), ("pg2", "10.0.1.5", True), ("pg3", "10.0.1.6", False)]


def test_layout_keeps_private_addresses_in_namespaces():
    layout = Layout(SPEC, "pgha")
    assert layout.mgmt.outer not in SPEC.network.vnet_cidr, "the host's only address is on the transit link"
    assert len({layout.mgmt.outer, layout.mgmt.inner, layout.lb_link.outer, layout.lb_link.inner,
                layout.client_link.outer, layout.client_link.inner, layout.storage_link.outer,
                layout.storage_link.inner}) == 8
    assert layout.namespaces == ["pgha-vnet", "pgha-lb", "pgha-client", "pgha-neighbour", "pgha-storage",
                                 "pgha-pg1", "pgha-pg2", "pgha-pg3"]


def test_the_neighbour_is_a_host_of_the_vnet_outside_the_subnet():
    """The ``neighbour`` vantage stands for another host of the network: inside vnet_cidr (the NSG's
    VirtualNetwork), outside the subnet of the cluster's nodes."""
    link = Layout(SPEC, "pgha").neighbour_link
    assert {link.inner, link.outer} <= set(SPEC.network.vnet_cidr)
    assert not {link.inner, link.outer} & set(SPEC.network.subnet_cidr)


class _Stop(Exception):
    """Raised where provision would start building: the decision before it is what is tested."""


@pytest.mark.parametrize("provisioned, torn_down", [(True, False), (False, True)])
def test_provision_tears_down_leftovers_only_of_a_stack_never_deployed(monkeypatch, tmp_path, provisioned, torn_down):
    """A recorded live stack (its provision succeeded) holds data: provision converges it in place and
    never tears it down; leftovers of a run that died before any deploy are cleaned first."""
    monkeypatch.setattr(StackState, "dir", property(lambda self: tmp_path / self.name))
    state = StackState(name="pgha", target="local", spec_path="stack.yaml")
    if provisioned:
        state.record("provision", ok=True, seconds=1)
    target, calls = local.LocalTarget(SPEC, state), []
    monkeypatch.setattr(local.HostView, "read", classmethod(lambda cls: None))
    monkeypatch.setattr(target, "_of", lambda stack, host: ["network namespace pgha-vnet"])
    monkeypatch.setattr(target, "teardown", lambda: calls.append("teardown"))
    monkeypatch.setattr(target, "_image", lambda recorded: (_ for _ in ()).throw(_Stop(recorded)))
    with pytest.raises(_Stop) as stop:
        target.provision()
    assert (calls == ["teardown"]) is torn_down and stop.value.args == (provisioned,)


def test_lb_reload_config_keeps_the_members_it_reports(tmp_path):
    config = lb.render_config(SPEC.model_copy(update={"load_balancer": SPEC.load_balancer.model_copy(
        update={"no_healthy_backends": "AllProbedUp"})}), "203.0.113.10", tmp_path, {"pg1": "10.0.1.4"})
    checked = f"check port {SPEC.ports.haproxy_health} inter {SPEC.load_balancer.probe_interval_s}s"
    assert f"server pg1 10.0.1.4 {checked}" in config
    assert config.count("server pg1 10.0.1.4") == 2, "in the probed pool and the unchecked one"
