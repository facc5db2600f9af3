"""Each node as its own operating system and services report it (testinfra over SSH, psql over the
local socket, etcdctl on the node): services, listening addresses, secret files, the pg_hba rules
PostgreSQL has loaded, and etcd's membership."""

from __future__ import annotations

import ipaddress

import pytest

from deployer.inventory import role_defaults

pytestmark = pytest.mark.acceptance
UNITS = ("etcd", "patroni", "haproxy", "ssh")


def units(spec) -> tuple[str, ...]:
    """The services every node must run and start at boot: ``UNITS``, and the etcd leader placement
    daemon where the spec keeps etcd's leader off Patroni's."""
    return UNITS + (("etcd-leader-elsewhere",) if spec.patroni.etcd_leader_elsewhere else ())


def intended_listeners(spec, address: str) -> dict[int, set[str]]:
    """Port -> the addresses it must listen on, and only those: PostgreSQL and etcd's client port on
    the node's address and loopback, etcd's peer port and Patroni's API on the node's address, SSH
    and HAProxy's ports on every address (the load balancer's traffic arrives on the node's)."""
    p = spec.ports
    return {p.postgres: {address, "127.0.0.1"}, p.etcd_client: {address, "127.0.0.1"}, p.etcd_peer: {address},
            p.patroni: {address}, p.ssh: {"0.0.0.0", "::"}, p.haproxy_primary: {"0.0.0.0"},
            p.haproxy_replicas: {"0.0.0.0"}, p.haproxy_health: {"0.0.0.0"}}


def secret_files() -> dict[str, tuple[str, bool]]:
    """Files holding a secret -> (the user that must own them with mode 0600, must exist). Patroni
    writes its pgpass only when it needs one (a replica's basebackup or rewind), so a leader may lack it."""
    patroni = role_defaults()["patroni"]
    return {"/etc/patroni/patroni.yml": ("postgres", True), patroni["patroni_postgresql_pgpass"]: ("postgres", False)}


@pytest.fixture(scope="module")
def hosts(stack):
    return {n.name: stack.testinfra_host(n.name) for n in stack.spec.nodes}


def test_services_run_and_start_at_boot_and_debians_cluster_is_absent(stack, hosts):
    for name, host in hosts.items():
        for unit in units(stack.spec):
            service = host.service(unit)
            assert service.is_running and service.is_enabled, f"{name}: {unit} running={service.is_running} enabled={service.is_enabled}"
        assert not host.service("postgresql").is_enabled, f"{name}: Debian's postgresql.service must stay off"
        clusters = host.check_output("pg_lsclusters --no-header || true")
        assert not clusters.strip(), f"{name}: Debian's default cluster exists: {clusters}"


def test_every_port_listens_on_its_intended_addresses_only(stack, hosts):
    for node in stack.spec.nodes:
        seen: dict[int, set[str]] = {}
        for line in hosts[node.name].check_output("ss -Hltn").splitlines():
            local = line.split()[3]
            addr, _, port = local.rpartition(":")
            seen.setdefault(int(port), set()).add(addr.strip("[]").replace("*", "0.0.0.0"))
        expected = intended_listeners(stack.spec, str(node.address))
        wrong = {port: (sorted(expected.get(port, set())), sorted(addrs)) for port, addrs in seen.items()
                 if addrs != expected.get(port)}
        missing = sorted(set(expected) - set(seen))
        assert not wrong and not missing, (f"{node.name}: listeners differ from the intended ones "
                                           f"(port: intended, seen) {wrong}; not listening: {missing}")


def test_every_file_holding_a_secret_is_owned_by_its_service_with_mode_0600(stack, hosts):
    for name, host in hosts.items():
        for path, (owner, required) in secret_files().items():
            f = host.file(path)
            assert f.exists or not required, f"{name}: {path} is missing"
            if not f.exists:
                continue
            assert (f.user, f.mode) == (owner, 0o600), f"{name}: {path} is {f.user} {oct(f.mode)}, must be {owner} 0o600"


def test_postgresql_loaded_only_scram_rules_from_the_subnet_or_local(stack):
    """Over TCP: TLS and scram-sha-256 from the subnet or loopback only, plain TCP refused explicitly."""
    subnet = stack.spec.network.subnet_cidr
    for node in stack.spec.nodes:
        rows = stack.psql(node.name, "SELECT line_number, type, address, netmask, auth_method, coalesce(error, '') "
                                     "FROM pg_hba_file_rules")
        assert rows, f"{node.name}: pg_hba_file_rules is empty"
        for line, kind, address, netmask, method, error in rows:
            where = f"{node.name}: pg_hba line {line} ({kind} {address}/{netmask} {method})"
            assert not error, f"{where}: PostgreSQL reports {error}"
            assert method != "trust", f"{where}: trust lets anyone in without a password"
            if kind == "local":
                assert method in ("scram-sha-256", "peer"), f"{where}: local connections need scram-sha-256 or peer"
                continue
            if (kind, method) == ("hostnossl", "reject"):
                continue  # plain TCP refused explicitly
            network = ipaddress.ip_network(f"{address}/{netmask}", strict=False)
            assert kind == "hostssl", f"{where}: every TCP rule that lets anyone in must require TLS (hostssl)"
            assert method == "scram-sha-256", f"{where}: only scram-sha-256 is allowed over TCP"
            assert network.subnet_of(subnet) or network.is_loopback, f"{where}: admits {network}, outside {subnet}"
        refusals = [(kind, address) for _, kind, address, _, method, _ in rows if (kind, method) == ("hostnossl", "reject")]
        assert ("hostnossl", "0.0.0.0") in refusals, f"{node.name}: no rule refuses plain TCP from anywhere ({rows})"


def test_etcd_has_one_healthy_member_per_node_and_one_leader(stack):
    node = stack.spec.nodes[0].name
    members = stack.etcdctl(node, "member", "list")["members"]
    assert sorted(m.get("name") for m in members) == sorted(n.name for n in stack.spec.nodes), \
        f"etcd members {[m.get('name') for m in members]}, the spec's nodes {[n.name for n in stack.spec.nodes]}"
    status = stack.etcdctl(node, "endpoint", "status", endpoints=stack.etcd_endpoints())
    leaders = {s["Status"]["leader"] for s in status}
    own = {s["Status"]["header"]["member_id"] for s in status}
    assert len(status) == len(stack.spec.nodes) and len(leaders) == 1 and leaders <= own, \
        f"etcd endpoint status: {len(status)} answered, leaders seen {leaders}"
