"""Seeded misconfigurations (``deployer break DEFECT`` / ``deployer heal``): each one a realistic
defect applied to a live local stack, the suites that must catch it, and its undo back to exactly
the spec. The project's own e2e run applies every one, runs the read-only suites, checks that the
guarding test failed with a message naming the defect, heals, and writes ``reports/detection.json``.

A defect differs from a fault (``deployer.drills.nemesis``): a fault is an outage the cluster must
survive; a defect is a wrong configuration the suites must notice. Applied defects are recorded in
the stack's state (``defects``), so ``heal`` in another process undoes exactly those.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import requests

from deployer import backups, haproxy_stat, patroni
from deployer.drills.trial import converged
from deployer.inventory import PATRONI_CONFIG, TLS_ON_NODE, role_defaults
from deployer.stack import Stack
from deployer.targets import TargetError
from deployer.targets.local import lb, nsg
from deployer.targets.local.cmd import run
from deployer.targets.local.storage import FIREWALL, PORT
from deployer.targets.local.network import Layout
from deployer.wait import wait_until

log = logging.getLogger("deployer.defects")


@dataclasses.dataclass(frozen=True)
class Defect:
    """``guards``: the tests (node id suffixes) that must fail on it; ``evidence``: a string their
    failure message must contain, so the failure names the defect rather than happening to fail."""

    name: str
    description: str
    guards: tuple[str, ...]
    evidence: str
    apply: Callable[[Stack], None]
    heal: Callable[[Stack], None]


def _local(stack: Stack):
    if stack.target.name != "local":
        raise TargetError(f"this defect edits the local target's own NSG or load balancer, not {stack.target.name}'s")
    return stack.target


def _load_nsg(stack: Stack, spec) -> None:
    """Replace the NSG tables with those rendered from ``spec`` (atomic; the fault tables stay)."""
    _local(stack).load_nft(nsg.render(Layout(spec, stack.state.name)))


def _open_postgres(stack: Stack) -> None:
    target, spec = _local(stack), stack.spec
    run(["nft", "insert", "rule", "inet", nsg.TABLE, "forward", f'oifname "br0" ip daddr {spec.network.subnet_cidr} '
         f'tcp dport {spec.ports.postgres} accept comment "added by hand"'], netns=target.layout.vnet)


def _open_etcd_to_the_network(stack: Stack) -> None:
    target, spec = _local(stack), stack.spec
    run(["nft", "insert", "rule", "inet", nsg.TABLE, "forward", f'oifname "br0" ip daddr {spec.network.subnet_cidr} '
         f'ip saddr {spec.network.vnet_cidr} tcp dport {spec.ports.etcd_client} accept comment "added by hand"'],
        netns=target.layout.vnet)


def _without_etcd_peer(stack: Stack) -> None:
    spec = stack.spec
    rules = [r.model_copy(update={"ports": [p for p in r.ports if p != "etcd_peer"]}) if "etcd_peer" in r.ports else r
             for r in spec.security_rules]
    _load_nsg(stack, spec.model_copy(update={"security_rules": rules}))


def _restore_nsg(stack: Stack) -> None:
    _load_nsg(stack, stack.spec)
    converged(stack)


def _victim(stack: Stack) -> str:
    return stack.spec.nodes[-1].name


def _drop_member(stack: Stack) -> None:
    lb.remove_member(stack.spec, _local(stack).lb_dir, _victim(stack))


def _readd_member(stack: Stack) -> None:
    """Put the dropped member back (``lb.add_member``), then wait until the pool holds every node,
    healthy. The deadline allows the cluster's convergence on top of the load balancer's settling: a
    defect before this one (an NSG rule losing etcd's peers) may still have the node HAProxies
    re-checking their primary when the member comes back (seen twice in CI: 19 s were too short)."""
    target = _local(stack)
    present = {m.node for m in target.backend_pool()}
    for node in (n for n in stack.spec.nodes if n.name not in present):
        lb.add_member(stack.spec, target.lb_dir, node.name, str(node.address))
    expected = [(n.name, True) for n in stack.spec.nodes]
    wait_until(f"backend pool members {expected} (node, healthy)", target.backend_pool,
               lambda pool: [(m.node, m.healthy) for m in pool] == expected,
               timeout=stack.budgets.lb_settle_s + stack.budgets.converge_s)


def _hba_file(stack: Stack, node: str) -> str:
    [[path]] = stack.psql(node, "SHOW hba_file")
    return path


def _as_postgres(stack: Stack, node: str, *argv: str) -> None:
    stack.ssh(node, ["sudo", "-u", "postgres", *argv])


def _reject_replication(stack: Stack) -> None:
    leader = stack.leader()
    replica = next(m for m in stack.cluster() if m.role == "replica")
    hba = _hba_file(stack, leader.name)
    _as_postgres(stack, leader.name, "sed", "-i", f"1i host replication all {replica.address}/32 reject", hba)
    stack.psql(leader.name, "SELECT pg_reload_conf()")
    stack.psql(leader.name, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication "
                            f"WHERE client_addr = '{replica.address}'")  # its reconnect meets the reject
    wait_until(f"Patroni to report {replica.name} no longer streaming", stack.cluster,
               lambda members: any(m.name == replica.name and m.state != "streaming" for m in members),
               timeout=stack.budgets.converge_s)


def _unreject_replication(stack: Stack) -> None:
    for node in stack.spec.nodes:  # only the defect's line: the role's own "hostnossl ... reject" stay
        _as_postgres(stack, node.name, "sed", "-i", "/^host replication all .* reject$/d", _hba_file(stack, node.name))
        stack.psql(node.name, "SELECT pg_reload_conf()")
    converged(stack)


def _trust_in_hba(stack: Stack) -> None:
    node = stack.spec.nodes[1].name
    hba = _hba_file(stack, node)
    _as_postgres(stack, node, "sed", "-i", f"$a host all all {stack.spec.network.subnet_cidr} trust", hba)
    stack.psql(node, "SELECT pg_reload_conf()")


def _untrust_hba(stack: Stack) -> None:
    for node in stack.spec.nodes:
        _as_postgres(stack, node.name, "sed", "-i", "/ trust$/d", _hba_file(stack, node.name))
        stack.psql(node.name, "SELECT pg_reload_conf()")


def _hba_nossl(stack: Stack) -> None:
    """On the second node, a line before the role's ``hostnossl ... reject`` accepts the app user
    without TLS from the subnet (as a hand edit "for a quick test" would)."""
    node = stack.spec.nodes[1].name
    line = f"hostnossl app app {stack.spec.network.subnet_cidr} scram-sha-256"
    _as_postgres(stack, node, "sed", "-i", f"0,/^hostnossl/s|^hostnossl|{line}\\n&|", _hba_file(stack, node))
    stack.psql(node, "SELECT pg_reload_conf()")


def _hba_ssl_only(stack: Stack) -> None:
    for node in stack.spec.nodes:
        _as_postgres(stack, node.name, "sed", "-i", "/^hostnossl app app /d", _hba_file(stack, node.name))
        stack.psql(node.name, "SELECT pg_reload_conf()")


def _ssl(value: str | None) -> Callable[[Stack], None]:
    """``ALTER SYSTEM SET ssl = value`` (None: ``RESET``, back to what Patroni sets) on the second
    node, reloaded: PostgreSQL there stops (or resumes) offering TLS."""
    def alter(stack: Stack) -> None:
        node = stack.spec.nodes[1].name
        stack.psql(node, f"ALTER SYSTEM SET ssl = {value}" if value else "ALTER SYSTEM RESET ssl")
        stack.psql(node, "SELECT pg_reload_conf()")
        wait_until(f"{node}'s PostgreSQL to run ssl = {value or 'on'}", lambda: stack.psql(node, "SHOW ssl"),
                   lambda seen: seen == [[value or "on"]], timeout=stack.budgets.converge_s)
    return alter


def _install_certificate(stack: Stack, node: str, issued_to: str) -> None:
    """Install on ``node`` the certificate and key the stack's PKI issued to ``issued_to``, then
    reload PostgreSQL and Patroni there (etcd reads its certificate at every handshake)."""
    pki = stack.target.pki.node(issued_to)
    for source, dest, mode in ((pki.cert, TLS_ON_NODE["cert"], "0644"), (pki.key, TLS_ON_NODE["key"], "0640")):
        stack.ssh(node, ["sudo", "sh", "-c", 'cat > "$1.new" && chmod "$2" "$1.new" && chgrp ssl-cert "$1.new" '
                         '&& mv "$1.new" "$1"', "sh", dest, mode], input=source.read_text())
    stack.psql(node, "SELECT pg_reload_conf()")
    stack.ssh(node, ["sudo", "systemctl", "reload", "patroni"])


def _wrong_certificate(stack: Stack) -> None:
    """A replica serves the leader's certificate (a copy-paste of the wrong node's files)."""
    leader = stack.leader().name
    _install_certificate(stack, next(m.name for m in stack.cluster() if m.role == "replica"), leader)


def _own_certificates(stack: Stack) -> None:
    for node in stack.spec.nodes:
        _install_certificate(stack, node.name, node.name)
    converged(stack)


def _etcd_drain(off: bool) -> Callable[[Stack], None]:
    """Move every node's etcd drain drop-in aside (``off``) or back, then reload systemd's units:
    without it a stopping member answers requests in flight with an error instead of a reset."""
    unit = role_defaults()["etcd"]["etcd_drain_unit_file"]
    src, dest = (unit, f"{unit}.off") if off else (f"{unit}.off", unit)

    def move(stack: Stack) -> None:
        for node in stack.spec.nodes:
            stack.ssh(node.name, ["sudo", "sh", "-c", 'mv "$1" "$2" && systemctl daemon-reload', "sh", src, dest])
    return move


def _haproxy_edit(expression: str) -> Callable[[Stack], None]:
    """Apply the sed ``expression`` to every node's HAProxy config, then reload it."""
    config = role_defaults()["haproxy"]["haproxy_config_file"]

    def edit(stack: Stack) -> None:
        for node in stack.spec.nodes:
            stack.ssh(node.name, ["sudo", "sed", "-i", expression, config])
            stack.ssh(node.name, ["sudo", "systemctl", "reload", "haproxy"])
    return edit


def _haproxy_check(listener: str, old: str, new: str) -> Callable[[Stack], None]:
    """Change the health-check path of one listener from ``old`` to ``new``."""
    return _haproxy_edit(f"/^listen {listener}$/,/^listen/ s#httpchk OPTIONS {old}$#httpchk OPTIONS {new}#")


def _health_monitor(old: str, new: str) -> Callable[[Stack], None]:
    """Change the prefix of the health frontend's ``monitor fail`` line from ``old`` to ``new``."""
    return _haproxy_edit(f"s|^    {old}monitor fail if|    {new}monitor fail if|")


def _patroni_auth(comment: str, uncomment: str, status: int) -> Callable[[Stack], None]:
    """On the second node, prefix Patroni's REST API credentials (``restapi.authentication``) with
    ``comment`` where they are prefixed with ``uncomment``, reload Patroni, and wait until an unsafe
    call without credentials whose body is no JSON gets ``status`` (400: it passed, 401: refused)."""
    def edit(stack: Stack) -> None:
        node = stack.spec.nodes[1].name
        lines = "; ".join(f"s/^{indent}{uncomment}{key}:/{indent}{comment}{key}:/"
                          for indent, key in (("  ", "authentication"), ("    ", "username"), ("    ", "password")))
        stack.ssh(node, ["sudo", "sed", "-i", f"/^restapi:/,/^$/ {{ {lines} }}", PATRONI_CONFIG])
        stack.ssh(node, ["sudo", "systemctl", "reload", "patroni"])
        url = f"{stack.target.patroni_url(node)}/restart"
        wait_until(f"{node}'s Patroni to answer POST /restart without credentials with {status}",
                   lambda: requests.post(url, data="{", verify=stack.target.ca_file, timeout=5).status_code, lambda seen: seen == status,
                   timeout=stack.budgets.converge_s)
    return edit


def _haproxy_fall(offset: int) -> Callable[[Stack], None]:
    """On the last node only, set ``fall`` of the primary listener's servers (its ``default-server``
    line) to the spec's plus ``offset``, as an edit by hand would, reload that HAProxy and wait until
    it reports that ``fall`` (``show stat``)."""
    config = role_defaults()["haproxy"]["haproxy_config_file"]

    def edit(stack: Stack) -> None:
        node, fall = _victim(stack), stack.spec.haproxy.check_fall + offset
        stack.ssh(node, ["sudo", "sed", "-Ei", f"/^listen primary$/,/^listen/ s/ fall [0-9]+ / fall {fall} /", config])
        stack.ssh(node, ["sudo", "systemctl", "reload", "haproxy"])
        wait_until(f"{node}'s HAProxy to report fall {fall} for every server of primary",
                   lambda: {row["check_fall"]
                            for row in haproxy_stat.servers(stack.haproxy_admin(node, "show stat"))["primary"].values()},
                   lambda seen: seen == {str(fall)}, timeout=stack.budgets.converge_s)
    return edit


def _lb_weights(weight: str) -> Callable[[Stack], None]:
    """Set the load balancer's weight of every member but the first (``0``: it gets no new connection)."""
    def set_weights(stack: Stack) -> None:
        target = _local(stack)
        for node in stack.spec.nodes[1:]:
            answer = lb.admin(target.lb_dir, f"set weight {lb.BACKEND}/{node.name} {weight}")
            if answer.strip():
                raise TargetError(f"the load balancer refused weight {weight} for {node.name}: {answer.strip()}")
    return set_weights


def _all_members(state: str) -> Callable[[Stack], None]:
    """``STATE server`` (``disable``: maintenance) every member of the load balancer's unchecked
    backend, where new connections go while the whole pool is probed down (``AllProbedUp``)."""
    def change(stack: Stack) -> None:
        target = _local(stack)
        for node in stack.spec.nodes:
            answer = lb.admin(target.lb_dir, f"{state} server {lb.ALL_BACKEND}/{node.name}")
            if answer.strip():
                raise TargetError(f"the load balancer refused to {state} {lb.ALL_BACKEND}/{node.name}: {answer.strip()}")
    return change


def _patch_config(stack: Stack, body: dict) -> None:
    """``PATCH /config`` (Patroni's dynamic configuration in the DCS) through the leader."""
    user = role_defaults()["patroni"]["patroni_restapi_username"]
    resp = requests.patch(f"{stack.target.patroni_url(stack.leader().name)}/config", json=body,
                          auth=(user, stack.secrets["rest_api"]), verify=stack.target.ca_file, timeout=10)
    if resp.status_code != 200:
        raise TargetError(f"Patroni refused PATCH /config {body}: {resp.status_code} {resp.text.strip()}")


def _set_ttl(offset: int) -> Callable[[Stack], None]:
    def patch(stack: Stack) -> None:
        ttl = stack.spec.patroni.ttl + offset
        _patch_config(stack, {"ttl": ttl})
        wait_until(f"every node's /config to say ttl {ttl}",
                   lambda: {patroni.get(stack.target, n.name, "/config")["ttl"] for n in stack.spec.nodes},
                   lambda seen: seen == {ttl}, timeout=stack.budgets.converge_s)
    return patch


def _dcs_settings(offset: int) -> Callable[[Stack], None]:
    """Set max_connections (applied at a restart) and wal_sender_timeout (on reload) in the DCS to the
    spec's plus ``offset`` (x 1000 ms), as a change by hand through Patroni would; wait until every
    member runs that wal_sender_timeout and reports a pending restart exactly when ``offset``."""
    def patch(stack: Stack) -> None:
        spec = stack.spec.postgres_settings()
        values = {"max_connections": str(int(spec["max_connections"]) + offset),
                  "wal_sender_timeout": str(int(spec["wal_sender_timeout"]) + 1000 * offset)}
        _patch_config(stack, {"postgresql": {"parameters": values}})

        def seen() -> dict[str, tuple[str, bool]]:
            return {n.name: (stack.psql(n.name, "SELECT setting FROM pg_settings WHERE name = 'wal_sender_timeout'")[0][0],
                             bool(patroni.get(stack.target, n.name, "/patroni").get("pending_restart")))
                    for n in stack.spec.nodes}
        wanted = (values["wal_sender_timeout"], bool(offset))
        wait_until(f"every member to run wal_sender_timeout {wanted[0]} ms and report pending_restart {wanted[1]}",
                   seen, lambda now: set(now.values()) == {wanted}, timeout=stack.budgets.converge_s)
    return patch


def _placement(state: str) -> Callable[[Stack], None]:
    """``systemctl STATE`` the etcd leader placement daemon on every node."""
    def change(stack: Stack) -> None:
        for node in stack.spec.nodes:
            stack.ssh(node.name, ["sudo", "systemctl", state, "etcd-leader-elsewhere"])
    return change


def _etcd_leader_on_primary(stack: Stack) -> None:
    _placement("stop")(stack)
    stack.move_etcd_leader(stack.leader().name)


def _etcd_leader_elsewhere(stack: Stack) -> None:
    _placement("start")(stack)
    stack.etcd_leader_elsewhere()


def _retag(stack: Stack, nodes: list[str], old: str, new: str) -> None:
    """Replace the tag line ``old`` by ``new`` in each node's Patroni configuration, then reload it
    (SIGHUP: Patroni rereads its tags and publishes them at its next loop)."""
    for node in nodes:
        stack.ssh(node, ["sudo", "sed", "-i", f"s/^  {old}$/  {new}/", PATRONI_CONFIG])
        stack.ssh(node, ["sudo", "systemctl", "reload", "patroni"])


def _cluster_seen(stack: Stack, expected: str, ok: Callable[[dict[str, dict]], bool]) -> None:
    """Wait until ``ok`` holds for the members as ``GET /cluster`` reports them (name -> its entry)."""
    wait_until(expected, lambda: {m["name"]: m for m in patroni.cluster_view(stack.target)["members"]}, ok,
               timeout=stack.budgets.converge_s)


def _async_replica(stack: Stack) -> str:
    """A replica, not the synchronous standby if there is one (its commits keep their acknowledgement)."""
    return sorted((m for m in stack.cluster() if m.role == "replica"), key=lambda m: (m.sync, m.name))[0].name


def _failover_priority_zero(stack: Stack) -> None:
    victim = _async_replica(stack)
    _retag(stack, [victim], "nofailover: false", "failover_priority: 0")
    _cluster_seen(stack, f"Patroni to report {victim} tagged failover_priority 0",
                  lambda members: (members[victim].get("tags") or {}).get("failover_priority") == 0)


def _failover_priority_as_spec(stack: Stack) -> None:
    _retag(stack, [n.name for n in stack.spec.nodes], "failover_priority: 0", "nofailover: false")
    _cluster_seen(stack, "Patroni to report no member tagged failover_priority",
                  lambda members: not any("failover_priority" in (m.get("tags") or {}) for m in members.values()))


def _walreceiver(stack: Stack, node: str) -> str | None:
    """The pid of the node's WAL receiver (PostgreSQL's shared memory still knows a stopped one)."""
    rows = stack.psql(node, "SELECT pid FROM pg_stat_wal_receiver")
    return rows[0][0] if rows else None


def _stall_replica(stack: Stack) -> None:
    """Freeze a replica's WAL receiver (SIGSTOP: it still says streaming), then write about three times
    ``maximum_lag_on_failover`` of WAL on the leader in a transaction rolled back (no row stays);
    wait until Patroni reports the replica's lag past the limit. A paused replay would not do:
    Patroni 4.1 resumes it at its next loop on PostgreSQL 14+, and judges the received position."""
    victim, limit = _async_replica(stack), stack.spec.patroni.maximum_lag_on_failover
    pid = _walreceiver(stack, victim)
    if pid is None:
        raise TargetError(f"{victim} runs no WAL receiver to stall")
    stack.ssh(victim, ["sudo", "kill", "-STOP", pid])
    stack.psql(stack.leader().name, "BEGIN; CREATE TABLE pgha_defect_wal AS SELECT g, repeat('x', 200) AS pad "
                                    f"FROM generate_series(1, {3 * limit // 200 + 1000}) g; ROLLBACK")
    _cluster_seen(stack, f"Patroni to report {victim}'s lag past maximum_lag_on_failover ({limit} bytes)",
                  lambda members: isinstance(members[victim].get("lag"), int) and members[victim]["lag"] > limit)


def _resume_replicas(stack: Stack) -> None:
    for node in stack.spec.nodes:
        pid = _walreceiver(stack, node.name)
        if pid is not None:
            stack.ssh(node.name, ["sudo", "kill", "-CONT", pid])
    converged(stack)


def _nosync_replicas(stack: Stack) -> None:
    """Synchronous mode on in the DCS (as the spec's tuned-sync profile runs it), then ``nosync`` on
    every replica, each a synchronous candidate: Patroni names no synchronous standby."""
    _patch_config(stack, {"synchronous_mode": True})
    _retag(stack, [m.name for m in stack.cluster() if m.role == "replica"], "nosync: false", "nosync: true")
    _cluster_seen(stack, "Patroni to report every replica tagged nosync and no synchronous standby",
                  lambda members: all((m.get("tags") or {}).get("nosync") is True and m["role"] == "replica"
                                      for m in members.values() if m["role"] != "leader"))


def _sync_as_spec(stack: Stack) -> None:
    sync = stack.spec.patroni.synchronous_mode
    _retag(stack, [n.name for n in stack.spec.nodes], "nosync: true", "nosync: false")
    _patch_config(stack, {"synchronous_mode": sync})
    _cluster_seen(stack, f"Patroni to report no member tagged nosync and {'a' if sync else 'no'} synchronous standby",
                  lambda members: not any("nosync" in (m.get("tags") or {}) for m in members.values())
                  and any(m["role"] == "sync_standby" for m in members.values()) == sync)
    converged(stack)


# ----- the backups' -----

def _archiver_since(stack: Stack, failing: bool) -> None:
    """Wait until the leader's archiver last failed after its last success (``failing``), or the
    other way round."""
    def state() -> tuple[float, float]:
        a = backups.read_archiver(stack, stack.leader().name)
        return a.last_failed_at or 0.0, a.last_archived_at or 0.0
    wait_until(f"the leader's archiver to {'fail' if failing else 'succeed'} since its last "
               f"{'success' if failing else 'failure'} (last failed at, last archived at)", state,
               lambda s: (s[0] > s[1]) == failing, timeout=stack.spec.backup.archive_max_age_s + 60, interval=2)


def _archive_command(failing: bool):
    """``archive_command`` in the DCS set by hand to ``/bin/false`` (or back to the spec's), then a
    WAL segment switched on the leader so the archiver tries it."""
    def change(stack: Stack) -> None:
        command = "/bin/false" if failing else stack.spec.postgres_settings()["archive_command"]
        _patch_config(stack, {"postgresql": {"parameters": {"archive_command": command}}})
        leader = stack.leader().name
        wait_until(f"{leader} to run archive_command {command!r}",
                   lambda: stack.psql(leader, "SHOW archive_command")[0][0], lambda seen: seen == command,
                   timeout=stack.budgets.converge_s)
        stack.psql(leader, "SELECT pg_switch_wal() FROM (SELECT txid_current()) AS written")
        _archiver_since(stack, failing)
    return change


def _storage_rule(stack: Stack, rule: str | None) -> None:
    """Insert ``rule`` first in the blob endpoint's network rules, or restore them as rendered (None)."""
    storage = _local(stack).storage
    if rule is None:
        run(["nft", "-f", "-"], netns=storage.layout.storage, input=storage.firewall())
    else:
        run(["nft", "insert", "rule", "inet", FIREWALL, "input", *rule.split()], netns=storage.layout.storage)


def _repository_cut_from_last_node(stack: Stack) -> None:
    """The blob endpoint drops the last node's packets (its network rule lost that node)."""
    _storage_rule(stack, f"ip saddr {stack.spec.nodes[-1].address} drop")


def _repository_open_to_everyone(stack: Stack) -> None:
    """The blob endpoint's network rules admit every source (Azure: public network access enabled)."""
    _storage_rule(stack, f"tcp dport {PORT} accept")


def _network_rules_as_rendered(stack: Stack) -> None:
    """Undo the two above."""
    _storage_rule(stack, None)


def _full_sets(stack: Stack) -> list[str]:
    return [b.label for b in backups.read_backups(stack, stack.leader().name)[1] if b.type == "full"]


def _delete_full_backups_data(stack: Stack) -> None:
    """What a storage lifecycle rule (retention outside pgBackRest) does to the full backups: every
    data file of every full backup set deleted from the container; their manifests stay listed."""
    from azure.storage.blob import ContainerClient

    repo = stack.target.backup_repository()
    client = ContainerClient(repo.url, repo.container, credential={"account_name": repo.account, "account_key": repo.key},
                             connection_verify=stack.target.ca_file)
    root = role_defaults()["pgbackrest"]["pgbackrest_repo_path"].strip("/")
    for label in _full_sets(stack):
        for blob in list(client.list_blobs(name_starts_with=f"{root}/backup/{stack.spec.stanza}/{label}/pg_data/")):
            client.delete_blob(blob.name)


def _new_full_backup(stack: Stack) -> None:
    """A new full backup, then the broken older sets expired (pgBackRest expires a full set, and the
    sets that depend on it, once a newer full one exists)."""
    broken = _full_sets(stack)
    backups.take(stack, "full")
    for label in broken:
        backups.pgbackrest(stack, stack.leader().name, f"--set={label}", "expire")


#: The guard of every defect that leaves the cluster unable to fail over (or to some replica).
FAILOVER_READY = "test_failover_readiness.py::test_a_failover_would_happen_now_and_every_replica_qualifies"
CATALOGUE: tuple[Defect, ...] = (
    Defect("nsg-open-postgres", "an NSG rule, added by hand without our comment, opens 5432 to the internet",
           ("test_smoke.py::test_readbacks_satisfy_the_target_contract",
            "test_smoke.py::test_from_the_internet_only_the_client_ports_answer"),
           "5432", _open_postgres, _restore_nsg),
    Defect("nsg-no-etcd-peer", "the NSG rule for the cluster lacks etcd's peer port 2380",
           ("test_smoke.py::test_readbacks_satisfy_the_target_contract",
            "test_network.py::test_between_nodes_exactly_the_allowed_ports_pass"),
           "2380", _without_etcd_peer, _restore_nsg),
    Defect("lb-missing-member", "the last node is missing from the load balancer's backend pool",
           ("test_smoke.py::test_every_node_healthy_in_the_load_balancer",
            "test_smoke.py::test_readbacks_satisfy_the_target_contract"),
           "backend pool", _drop_member, _readd_member),
    Defect("replica-not-streaming", "a replica cannot stream: the leader's pg_hba rejects its replication connection",
           ("test_smoke.py::test_one_leader_and_streaming_replicas",
            "test_replication.py::test_leader_streams_to_every_replica"),
           "streaming", _reject_replication, _unreject_replication),
    Defect("replicas-route-to-leader", "every node's HAProxy checks /health for 5001, so 5001 routes to the leader too",
           ("test_haproxy.py::test_every_node_routes_primary_to_the_leader_and_replicas_to_the_replicas",
            "test_haproxy.py::test_through_every_nodes_haproxy_5000_reaches_the_leader_and_5001_every_replica"),
           "replicas", _haproxy_check("replicas", "/replica", "/health"),
           _haproxy_check("replicas", "/health", "/replica")),
    Defect("haproxy-wrong-endpoint", "every node's HAProxy checks /replica for 5000, so writes go to replicas",
           ("test_haproxy.py::test_every_node_routes_primary_to_the_leader_and_replicas_to_the_replicas",
            "test_smoke.py::test_write_lands_on_leader_and_reads_back_from_a_replica"),
           "primary", _haproxy_check("primary", "/primary", "/replica"),
           _haproxy_check("primary", "/replica", "/primary")),
    Defect("dcs-ttl", "Patroni's ttl in the DCS is 5 s longer than the spec's",
           ("test_patroni.py::test_the_dynamic_configuration_equals_the_spec_on_every_node",),
           "ttl", _set_ttl(5), _set_ttl(0)),
    Defect("haproxy-health-always-200", "every node's HAProxy answers the load balancer's probe 200 even "
           "without a primary to route to (its `monitor fail` line commented out)",
           ("test_lb_probe.py::test_a_member_without_a_primary_to_route_to_leaves_the_pool_until_it_routes_again",),
           "no primary to route to", _health_monitor("", "# "), _health_monitor("# ", "")),
    Defect("lb-one-member", "the load balancer sends every new connection to one member (the others' weight is 0)",
           ("test_lb_spread.py::test_connections_through_the_frontend_are_spread_over_more_than_one_member",),
           "expected at least 2", _lb_weights("0"), _lb_weights("100%")),
    Defect("etcd-leader-on-primary", "etcd's leader runs on Patroni's leader (the placement daemon stopped)",
           ("test_patroni.py::test_etcds_leader_is_on_another_node_than_patronis_leader",),
           "etcd's leader on another node", _etcd_leader_on_primary, _etcd_leader_elsewhere),
    Defect("lb-all-probed-down", "with every member probed down the load balancer sends new connections nowhere "
           "(AllProbedDown) although the spec says AllProbedUp",
           ("test_lb_probe.py::test_with_every_member_probed_down_new_connections_go_where_the_spec_says",),
           "AllProbedUp", _all_members("disable"), _all_members("enable")),
    Defect("setting-not-applied", "max_connections and wal_sender_timeout changed in the DCS by hand (PATCH /config): "
           "every member waits for a restart and runs another wal_sender_timeout than the spec's",
           ("test_settings.py::test_no_member_waits_for_a_restart",
            "test_settings.py::test_every_node_runs_the_settings_the_spec_sets",
            "test_patroni.py::test_the_dynamic_configuration_equals_the_spec_on_every_node"),
           "max_connections", _dcs_settings(1), _dcs_settings(0)),
    # Before TLS the neighbour's unauthenticated etcd write went through too (test_control_plane caught
    # it); etcd's client-certificate authentication now refuses it, so only the NSG drift is left to see.
    Defect("nsg-network-reaches-etcd", "an NSG rule, added by hand, lets every host of the network reach etcd's "
           "client port (only etcd's client-certificate authentication still stands in the way)",
           ("test_smoke.py::test_readbacks_satisfy_the_target_contract",),
           "ports=(2379,)", _open_etcd_to_the_network, _restore_nsg),
    Defect("patroni-rest-no-auth", "one node's Patroni REST API lost its credentials (restapi.authentication "
           "commented out, Patroni reloaded): anyone reaching it may restart, switch over or reconfigure",
           ("test_control_plane.py::test_from_a_neighbour_in_the_network_every_unsafe_call_is_refused",),
           "Patroni's REST API on pg2", _patroni_auth("#", "", 400), _patroni_auth("", "#", 401)),
    Defect("haproxy-hand-edited", "the last node's HAProxy configuration edited by hand (the primary listener's "
           "servers marked down after 3 more failed checks than the spec's fall) and reloaded",
           ("test_haproxy.py::test_every_nodes_haproxy_runs_what_the_role_renders_from_the_spec",),
           "pg3: listen primary: server pg1 fall", _haproxy_fall(3), _haproxy_fall(0)),
    Defect("hba-trust", "a node's pg_hba trusts the whole subnet",
           ("test_hosts.py::test_postgresql_loaded_only_scram_rules_from_the_subnet_or_local",),
           "trust", _trust_in_hba, _untrust_hba),
    Defect("replica-failover-priority-0", "a replica's Patroni configuration says failover_priority: 0 (in place of "
           "nofailover: false): Patroni never promotes it",
           (FAILOVER_READY,), "failover_priority: 0", _failover_priority_zero, _failover_priority_as_spec),
    Defect("replica-lagging", "a replica's WAL receiver is stalled while the leader writes: its lag passes "
           "maximum_lag_on_failover, so Patroni would not promote it",
           (FAILOVER_READY,), "maximum_lag_on_failover", _stall_replica, _resume_replicas),
    Defect("hba-nossl", "a node's pg_hba accepts the app user without TLS (a hostnossl line before the reject)",
           ("test_tls.py::test_postgresql_refuses_plain_text_through_the_frontend_and_on_every_node",),
           "without TLS", _hba_nossl, _hba_ssl_only),
    Defect("ssl-off", "a node's PostgreSQL runs ssl = off (ALTER SYSTEM, reloaded): it offers no TLS at all",
           ("test_tls.py::test_every_certificate_chains_to_the_stacks_ca_names_its_address_and_lives_long_enough",
            "test_tls.py::test_postgresql_refuses_plain_text_through_the_frontend_and_on_every_node"),
           "pg2", _ssl("off"), _ssl(None)),
    Defect("cert-wrong-name", "a replica serves another node's certificate (the leader's files copied to it)",
           ("test_tls.py::test_every_certificate_chains_to_the_stacks_ca_names_its_address_and_lives_long_enough",),
           "not issued for", _wrong_certificate, _own_certificates),
    Defect("etcd-undrained", "every etcd unit lost its drain (the role's drain.conf moved aside): a stopping member "
           "answers requests in flight with gRPC Unknown, which Patroni does not retry",
           ("test_dcs.py::test_a_stopping_etcd_member_turns_its_clients_away_and_never_answers_them_an_error",),
           "gRPC Unknown", _etcd_drain(off=True), _etcd_drain(off=False)),
    Defect("sync-nosync", "under synchronous mode (switched on in the DCS where the spec runs asynchronous) every "
           "replica, each a synchronous candidate, is tagged nosync: no synchronous standby, no failover",
           (FAILOVER_READY,), "nosync", _nosync_replicas, _sync_as_spec),
    Defect("archive-command-fails", "archive_command in the DCS set by hand to /bin/false: no WAL segment reaches the "
           "repository, so nothing written since can be restored",
           ("test_backup.py::test_the_leader_archives_every_wal_segment_in_time_and_without_failing",
            "test_settings.py::test_every_node_runs_the_settings_the_spec_sets"),
           "archiv", _archive_command(failing=True), _archive_command(failing=False)),
    Defect("repository-unreachable-from-a-node", "the blob endpoint's network rules drop the last node: promoted, "
           "it could not archive, back up or restore",
           ("test_backup.py::test_every_node_reaches_the_repository_and_the_leaders_wal_arrives_there",),
           "pg3", _repository_cut_from_last_node, _network_rules_as_rendered),
    Defect("repository-open-to-the-internet", "the blob endpoint's network rules admit every source (public network "
           "access): anyone with the key, or a leaked SAS, reaches the backups",
           ("test_backup.py::test_the_repository_answers_no_one_on_the_internet",),
           "answered a client on the internet", _repository_open_to_everyone, _network_rules_as_rendered),
    Defect("full-backups-deleted", "a retention outside pgBackRest (a storage lifecycle rule) deleted the data files "
           "of every full backup: the repository lists them, but keeps no full backup that restores",
           ("test_backup.py::test_a_complete_full_backup_younger_than_the_schedule_promises_exists",),
           "incomplete", _delete_full_backups_data, _new_full_backup),
)
BY_NAME = {d.name: d for d in CATALOGUE}


def apply(stack: Stack, name: str) -> Defect:
    """Apply defect ``name`` and record it in the state."""
    if name not in BY_NAME:
        raise TargetError(f"unknown defect {name!r}; known: {', '.join(BY_NAME)}")
    defect = BY_NAME[name]
    log.info("Breaking %s: %s.", stack.state.name, defect.description)
    defect.apply(stack)
    stack.state.data["defects"] = [d for d in stack.state.data.get("defects", []) if d != name] + [name]
    stack.state.save()
    return defect


def heal(stack: Stack) -> list[str]:
    """Undo every recorded defect, newest first; the names healed. Then, when any was, wait until
    the stack is as healthy as its spec wants (one leader, every replica streaming on its timeline,
    every node healthy in the load balancer): a defect may have cost the cluster its DCS quorum or
    its leader, and whatever comes next must start from a settled stack, not from its recovery."""
    healed = []
    for name in reversed(stack.state.data.get("defects", [])):
        log.info("Healing %s: %s no more.", stack.state.name, BY_NAME[name].description)
        BY_NAME[name].heal(stack)
        healed.append(name)
        stack.state.data["defects"] = [d for d in stack.state.data["defects"] if d != name]
        stack.state.save()
    if healed:
        converged(stack)
        stack.target.wait_pool_healthy()
    return healed
