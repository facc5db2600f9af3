"""Read-backs of the Azure target: what ARM reports, mapped to the contract's types."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest
from azure_fakes import ADMIN_CIDR, CMP, NET, answer_pool, load

from deployer.targets import contract, get
from deployer.targets.azure.target import AzureTarget
from deployer.targets.base import HostAccess, PoolMember, ProbeResult, RuleInForce, TargetError


def answer_rules(arm, nodes=("pg1", "pg2", "pg3")):
    arm.add("GET", f"{NET}/networkSecurityGroups/pgha-nsg", load("nsg.json"))
    for node in nodes:
        arm.lro("POST", f"{NET}/networkInterfaces/pgha-{node}-nic/effectiveNetworkSecurityGroups", load("effective_nsg.json"))



def test_registered_under_its_name_with_its_capabilities():
    assert get("azure") is AzureTarget
    assert AzureTarget.capabilities == {"crash_vm", "isolate", "watchdog"}


def test_security_rules_are_the_nsg_rules_then_each_nics_effective_rules(deployed, arm):
    answer_rules(arm)
    rules = deployed.security_rules()
    assert all(type(r) is RuleInForce for r in rules)
    nsg = {r.name: r for r in rules if r.scope == "nsg"}
    assert sorted(nsg) == sorted(["allow-clients-haproxy", "allow-lb-probe", "allow-cluster", "allow-etcd", "allow-mgmt-ssh",
                                  "deny-all-inbound"]), "Azure's default rules stay out of the nsg scope"
    assert nsg["allow-clients-haproxy"] == RuleInForce("allow-clients-haproxy", 110, "inbound", "allow", "tcp",
                                                       ("Internet",), (5000, 5001), "nsg")
    assert nsg["allow-mgmt-ssh"].sources == (ADMIN_CIDR,) and nsg["allow-mgmt-ssh"].ports == (22,)
    assert nsg["deny-all-inbound"] == RuleInForce("deny-all-inbound", 4000, "inbound", "deny", "any", ("*",), (), "nsg")
    pg2 = {r.name: r for r in rules if r.scope == "pg2"}
    assert pg2["allow-cluster"].ports == (5000, 5001, 5432, 8008, 8404)
    assert pg2["allow-etcd"].sources == ("10.0.1.0/24",) and pg2["allow-etcd"].ports == (2379, 2380)
    assert pg2["deny-all-inbound"].sources == ("*",) and pg2["deny-all-inbound"].ports == ()
    assert pg2["DenyAllInBound"] == RuleInForce("DenyAllInBound", 65500, "inbound", "deny", "any", ("*",), (), "pg2")
    assert {r.scope for r in rules} == {"nsg", "pg1", "pg2", "pg3"}


def test_resolve_source_gives_the_form_the_nsg_reports(deployed):
    assert deployed.resolve_source("Any") == ("*",)
    assert deployed.resolve_source("Management") == (ADMIN_CIDR,)
    for tag in ("Internet", "VirtualNetwork", "AzureLoadBalancer"):
        assert deployed.resolve_source(tag) == (tag,)
    assert deployed.resolve_source("198.51.100.0/24") == ("198.51.100.0/24",)


def test_backend_pool_maps_nics_to_nodes_with_health_from_every_rule(deployed, arm):
    answer_pool(arm)
    pool = deployed.backend_pool()
    assert all(type(m) is PoolMember for m in pool)
    assert pool == [PoolMember("pg1", "10.0.1.4", True), PoolMember("pg2", "10.0.1.5", True),
                    PoolMember("pg3", "10.0.1.6", False)]  # pg3 is Down on the replicas rule


def test_the_long_running_reads_of_one_readback_run_concurrently(deployed, arm):
    """Each is 5-20 s on Azure; one after the other, a pool read took one per rule and the rules
    one per NIC, more than the waits derived from ``readback_latency_s`` allow (fails if sequential)."""
    lb = f"{NET}/loadBalancers/pgha-lb"
    arm.add("GET", f"{lb}/backendAddressPools/nodes", load("backend_pool.json"))
    arm.together("POST", [f"{lb}/loadBalancingRules/{rule}/health" for rule in ("haproxy-primary", "haproxy-replicas")],
                 [load("lb_health_primary.json"), load("lb_health_replicas.json")])
    assert [m.healthy for m in deployed.backend_pool()] == [True, True, False]
    arm.add("GET", f"{NET}/networkSecurityGroups/pgha-nsg", load("nsg.json"))
    arm.together("POST", [f"{NET}/networkInterfaces/pgha-{n}-nic/effectiveNetworkSecurityGroups" for n in ("pg1", "pg2", "pg3")],
                 [load("effective_nsg.json")] * 3)
    assert {r.scope for r in deployed.security_rules()} == {"nsg", "pg1", "pg2", "pg3"}
    lb_spec = deployed.spec.load_balancer
    assert deployed.budgets.lb_settle_s >= 2 * AzureTarget.readback_latency_s + lb_spec.probe_interval_s * lb_spec.probe_threshold


def test_backend_pool_before_attach_is_empty_without_asking_for_health(deployed, arm):
    arm.add("GET", f"{NET}/loadBalancers/pgha-lb/backendAddressPools/nodes", load("backend_pool_empty.json"))
    assert deployed.backend_pool() == []
    assert not arm.sent("POST")


def test_the_shared_contract_checks_pass_on_the_faked_platform(deployed, arm):
    answer_rules(arm)
    answer_pool(arm)
    arm.error("GET", "/resourcegroups/rg-pgha", 404, "ResourceGroupNotFound", "Resource group 'rg-pgha' could not be found.")
    contract.check_readbacks(deployed, expect_members=True)


def test_leftovers_is_a_list_of_str(deployed, arm):
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("GET", "/resourceGroups/rg-pgha/resources", load("resources_in_group.json"))
    left = deployed.leftovers()
    assert type(left) is list and all(type(line) is str for line in left)


def test_hosts_go_through_the_nat_ports_of_the_frontend(deployed, state):
    hosts = deployed.hosts()
    assert [type(h) for h in hosts] == [HostAccess] * 3
    assert [(h.node, h.address, h.ssh_host, h.ssh_port, h.user) for h in hosts] == [
        ("pg1", "10.0.1.4", "20.1.2.3", 50001, "pgadmin"), ("pg2", "10.0.1.5", "20.1.2.3", 50002, "pgadmin"),
        ("pg3", "10.0.1.6", "20.1.2.3", 50003, "pgadmin")]
    assert hosts[0].known_hosts == state.dir / "known_hosts" and hosts[0].key_file == state.dir / "id_ed25519"
    assert "StrictHostKeyChecking=yes" in hosts[0].ssh_args()


def test_frontend_vantage_and_ansible_vars(deployed):
    assert deployed.frontend() == ("20.1.2.3", 5000)
    assert deployed.vantage() == [], "this machine is where clients are"
    assert deployed.ansible_vars() == {"common_apt_update_cache": True, "patroni_watchdog_mode": "required"}


def test_is_up_when_every_vm_runs(deployed, arm):
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    for node in ("pg1", "pg2", "pg3"):
        arm.add("GET", f"{CMP}/virtualMachines/pgha-{node}/instanceView", load("vm_instance_view.json"))
    assert deployed.is_up() is True


def test_is_up_is_false_without_the_group(deployed, arm):
    arm.error("GET", "/resourcegroups/rg-pgha", 404, "ResourceGroupNotFound", "Resource group 'rg-pgha' could not be found.")
    assert deployed.is_up() is False


@pytest.fixture
def listener():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_probe_from_the_internet_is_a_real_connect_from_this_process(deployed, listener):
    ok = deployed.probe("internet", "127.0.0.1", listener, timeout=1)
    assert type(ok) is ProbeResult and ok.reachable and ok.detail == "connected"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    refused = deployed.probe("internet", "127.0.0.1", closed, timeout=1)
    assert not refused.reachable and refused.src == "internet" and refused.port == closed


def test_probe_from_a_node_runs_nc_over_ssh(make_target, deployed, state):
    runs = []

    def run(cmd, **kwargs):
        runs.append(cmd)
        return subprocess.CompletedProcess(cmd, 1 if cmd[-1].endswith(" 5432") else 0, "", "")

    target = make_target(run=run)
    assert target.probe("pg1", "pg2", 8008).reachable
    assert not target.probe("vnet", "pg1", 5432).reachable
    first, second = runs
    assert first[0] == "ssh" and "pgadmin@20.1.2.3" in first and first[-2:] == ["--", "nc -z -w 3 10.0.1.5 8008"]
    assert first[first.index("-p") + 1] == "50001"
    assert second[second.index("-p") + 1] == "50002", "the vnet vantage is a node other than the destination"


def test_probe_names_a_broken_vantage(make_target, deployed):
    target = make_target(run=lambda cmd, **kw: subprocess.CompletedProcess(cmd, 255, "", "Connection timed out"))
    with pytest.raises(TargetError, match="SSH to pg1 .*failed: Connection timed out"):
        target.probe("pg1", "pg2", 5432)
    with pytest.raises(TargetError, match="unknown probe source 'pg9'"):
        target.probe("pg9", "pg2", 5432)


def test_patroni_url_is_an_ssh_tunnel_to_the_node(make_target, deployed):
    started = []

    class Tunnel:
        """Stands in for `ssh -N -L`: listens on the forwarded local port until terminated."""

        def __init__(self, cmd, **kwargs):
            started.append(cmd)
            port = int(cmd[cmd.index("-L") + 1].split(":")[1])
            self.sock = socket.create_server(("127.0.0.1", port))
            self.done = threading.Event()

        def poll(self):
            return 0 if self.done.is_set() else None

        def terminate(self):
            self.sock.close()
            self.done.set()

        def wait(self, timeout=None):
            return 0

    target = make_target(popen=Tunnel)
    url = target.patroni_url("pg2")
    assert url.startswith("https://127.0.0.1:") and target.patroni_url("pg2") == url, "one tunnel, reused"
    (cmd,) = started
    assert cmd[cmd.index("-L") + 1].endswith(":10.0.1.5:8008") and "pgadmin@20.1.2.3" in cmd
    assert cmd[cmd.index("-p") + 1] == "50002"
    target.close()
    assert target._tunnels.open == {}
