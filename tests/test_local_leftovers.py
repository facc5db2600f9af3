"""``leftovers()`` of the local target finds everything of a stack, also of one created (by an older
version) under a name the current validation refuses, which ``deployer down`` cannot name. The host
is recorded command output behind the target's command runner (``cmd.run``) and a recorded process
list; nothing is created, and only the reading commands below may run."""

from __future__ import annotations

import subprocess

import pytest

import deployer.state
from deployer.spec import load_spec
from deployer.state import StackState
from deployer.targets.local import target as local

SPEC = load_spec()

IP_NETNS_LIST = """\
pgha-pg3 (id: 5)
pgha-pg2 (id: 4)
pgha-client (id: 2)
pgha-vnet (id: 0)
PG_Old-vnet (id: 8)
PG_Old-pg1 (id: 9)
dev2-vnet (id: 10)
pgha-2-vnet (id: 11)
pgha-2-pg1 (id: 12)
pgha-3-pg1 (id: 13)
cni-4f1c2a
"""
IP_LINK_SHOW = """\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: eth0@if31: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 02:42:ac:11:00:02 brd ff:ff:ff:ff:ff:ff link-netnsid 0
7: pgha-mgmt@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 8e:4a:5b:0c:11:02 brd ff:ff:ff:ff:ff:ff link-netns pgha-vnet
12: PG_Old-mgmt@if11: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 5e:00:9a:3c:21:7f brd ff:ff:ff:ff:ff:ff link-netns PG_Old-vnet
15: dev2-mgmt@if14: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 5e:00:9a:3c:21:80 brd ff:ff:ff:ff:ff:ff link-netns dev2-vnet
"""
NFT_LIST_TABLES = """\
table inet filter
table inet pgha_nsg
"""


def findmnt(root) -> str:
    return "\n".join([
        "/", "/proc", "/sys", "/sys/fs/cgroup", "/dev/shm",
        f"{root}/pgha/vms/pg2/root",
        f"{root}/old.stack_7/vms/pg1/root",
        f"{root}/dev2/vms/pg1/root",
        "/var/cache/pgha/images/abc123",
    ]) + "\n"


def processes(root) -> list[tuple[int, str]]:
    return [
        (1, "/sbin/docker-init -- sleep infinity"),
        (4242, f"systemd-nspawn -q -D {root}/pgha/vms/pg3/root -M pg3 --register=no --keep-unit "
               "--network-namespace-path=/run/netns/pgha-pg3 --console=read-only -b"),
        (4343, f"/var/cache/pgha/images/abc/lib64/ld-linux-x86-64.so.2 --library-path x /var/cache/pgha/images/abc/"
               f"usr/sbin/haproxy -D -f {root}/Legacy/lb/haproxy.cfg"),
        (4444, f"systemd-nspawn -q -D {root}/dev2/vms/pg1/root -M pg1 -b"),
        (4545, f"ssh -o IdentityFile={root}/pgha/id_ed25519 -o ControlPersist=60s pgadmin@10.0.1.4"),
    ]


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A host where stack ``pgha`` is half torn down, ``dev2`` (a valid name) runs, so do ``pgha-2``
    (known by its ``-vnet`` namespace) and ``pgha-3`` (by its state dir; one namespace left), whose
    names start with ``pgha-`` like ``pgha``'s own namespaces, and three stacks
    under names the current validation refuses left things behind: ``PG_Old`` (namespaces, veth),
    ``old.stack_7`` (a mount under its state dir), ``Legacy`` (only its load balancer process and
    its state dir)."""
    root = tmp_path / "state"
    for stack in ("pgha", "dev2", "Legacy", "pgha-3"):
        (root / stack).mkdir(parents=True)
    (root / "pgha.lock").write_text("")
    monkeypatch.setattr(deployer.state, "STATE_ROOT", root)
    monkeypatch.setattr(local, "CGROUP_ROOT", tmp_path / "cgroup")
    answers = {("ip", "netns", "list"): IP_NETNS_LIST, ("ip", "-o", "link", "show"): IP_LINK_SHOW,
               ("findmnt", "-rn", "-o", "TARGET"): findmnt(root), ("nft", "list", "tables"): NFT_LIST_TABLES}
    ran = []

    def run(argv, **kwargs):
        assert tuple(argv) in answers, f"leftovers ran {argv}, which it must not (only reads are recorded)"
        ran.append(tuple(argv))
        return subprocess.CompletedProcess(argv, 0, stdout=answers[tuple(argv)], stderr="")

    monkeypatch.setattr(local, "run", run)
    monkeypatch.setattr(local, "_processes", lambda: processes(root))
    (tmp_path / "cgroup" / "unified" / "init.scope" / "pgha.pg2").mkdir(parents=True)
    return local.LocalTarget(SPEC, StackState(name="pgha", target="local", spec_path="stack.yaml")), root, ran


def test_leftovers_finds_the_stacks_own_namespaces_interface_mounts_processes_cgroups_and_tables(host):
    target, root, ran = host
    left = [line for line in target.leftovers() if "a name this version refuses" not in line]
    assert left == [
        "network namespace pgha-pg3", "network namespace pgha-pg2", "network namespace pgha-client",
        "network namespace pgha-vnet", "host interface pgha-mgmt", f"mount {root}/pgha/vms/pg2/root",
        f"process 4242 ({processes(root)[1][1]})",
        f"cgroup {root.parent}/cgroup/unified/init.scope/pgha.pg2",
        "nftables table in the host namespace: table inet pgha_nsg",
    ], "nothing of dev2, pgha-2 or pgha-3 (other valid stacks: `deployer down` reaches them), no ssh client"
    assert set(ran) == {("ip", "netns", "list"), ("ip", "-o", "link", "show"), ("findmnt", "-rn", "-o", "TARGET"),
                        ("nft", "list", "tables")}


def test_leftovers_finds_what_stacks_under_refused_names_left(host):
    target, root, _ = host
    note = " (of stack {!r}, a name this version refuses: left by an older one; remove it by hand)"
    assert [line for line in target.leftovers() if "a name this version refuses" in line] == [
        f"process 4343 ({processes(root)[2][1]})" + note.format("Legacy"),
        "network namespace PG_Old-vnet" + note.format("PG_Old"),
        "network namespace PG_Old-pg1" + note.format("PG_Old"),
        "host interface PG_Old-mgmt" + note.format("PG_Old"),
        f"mount {root}/old.stack_7/vms/pg1/root" + note.format("old.stack_7"),
    ]


def test_matching_only_the_validated_name_misses_them(host, monkeypatch):
    """Negative control: with every name counted as valid (the old behaviour: only this stack's own
    name was matched), the refused stacks' namespaces, veth, mount and process go unreported."""
    target, _, _ = host
    monkeypatch.setattr(local, "_refused", lambda name: False)
    assert not [line for line in target.leftovers() if "PG_Old" in line or "old.stack_7" in line or "Legacy" in line]


class Stop(Exception):
    pass


@pytest.mark.parametrize("stack, cleans", [("pgha", True), ("dev3", False)])
def test_provision_cleans_first_for_its_own_leftovers_only(host, monkeypatch, stack, cleans):
    """``dev3`` has nothing on the host but sees the refused stacks' leftovers: no reason to tear down."""
    target = local.LocalTarget(SPEC, StackState(name=stack, target="local", spec_path="stack.yaml"))
    torn = []
    monkeypatch.setattr(target, "teardown", lambda: torn.append(stack))
    monkeypatch.setattr(local, "image_packages", lambda spec: (_ for _ in ()).throw(Stop()))
    assert any("refuses" in line for line in target.leftovers())
    with pytest.raises(Stop):
        target.provision()
    assert torn == ([stack] if cleans else [])
