"""A deployed stack as suites and the CLI see it: spec, target, SSH to nodes, Patroni, SQL via the LB.

``Stack.attach(name)`` builds it from the saved state; nothing here knows which target runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from deployer import haproxy_stat, patroni
from deployer.budgets import ETCD_LEADER_MOVE_S, Budgets
from deployer.inventory import TLS_ON_NODE, role_defaults
from deployer.paths import run_reports
from deployer.secrets import Secrets
from deployer.spec import StackSpec, load_spec
from deployer.state import StackState
from deployer.targets import Target, TargetError, get
from deployer.wait import wait_until

#: libpq options every client of the frontend uses: bounded connect, dead peers noticed in seconds,
#: and TLS (``sslmode`` and ``sslrootcert``: see ``Stack.dsn``).
CLIENT_OPTIONS = ("connect_timeout=5 keepalives=1 keepalives_idle=2 keepalives_interval=1 keepalives_count=2 "
                  "tcp_user_timeout=5000")
#: etcdctl's TLS settings on a node: the stack's CA and the node's own certificate (etcd authenticates
#: every client by its certificate).
ETCDCTL_TLS = (f"ETCDCTL_CACERT={TLS_ON_NODE['ca']}", f"ETCDCTL_CERT={TLS_ON_NODE['cert']}",
               f"ETCDCTL_KEY={TLS_ON_NODE['key']}")


class Stack:
    """One stack: ``spec``, ``target``, ``secrets``, and ways to talk to its nodes and frontend."""

    def __init__(self, spec: StackSpec, state: StackState):
        self.spec, self.state = spec, state
        self.target: Target = get(state.target)(spec, state)
        self.secrets = Secrets(state.dir)

    @property
    def reports(self) -> Path:
        """``reports/<run id>/`` of the current run: JUnit XML, drill results, log bundles."""
        return run_reports()

    @property
    def budgets(self) -> Budgets:
        """Every budget and deadline of this stack (the spec's, with the target's read-back latency)."""
        return self.target.budgets

    @classmethod
    def attach(cls, name: str) -> Stack:
        """The stack ``name`` as last deployed; TargetError if it was never provisioned."""
        state = StackState.load(name)
        if state is None or not state.done("provision"):
            raise TargetError(f"no provisioned stack named {name!r}; run `deployer up --name {name}` first")
        return cls(load_spec(state.spec_path), state)

    # ----- Patroni -----

    def cluster(self) -> list[patroni.Member]:
        """The cluster as Patroni reports it."""
        return patroni.cluster(self.target)

    def leader(self) -> patroni.Member:
        """The one leader Patroni reports; AssertionError naming what it reports otherwise."""
        leaders = [m for m in self.cluster() if m.role == "leader"]
        if len(leaders) != 1:
            raise AssertionError(f"expected exactly one leader, Patroni reports {[m.name for m in leaders]}")
        return leaders[0]

    # ----- nodes -----

    def ssh(self, node: str, command: str | list[str], timeout: float = 60, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command on ``node`` as the admin user (prefix ``sudo`` yourself); a list is quoted
        for the remote shell, a string is a shell command line; ``input`` goes to its stdin."""
        argv = self.target.host(node).ssh_argv(command)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise TargetError(f"on {node}: `{argv[-1]}` failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def psql(self, node: str, query: str, dbname: str = "postgres") -> list[list[str]]:
        """Run ``query`` as the postgres superuser over the node's local socket; rows of strings."""
        out = self.ssh(node, ["sudo", "-u", "postgres", "psql", "-XAtq", "-d", dbname, "-F", "\t", "-c", query]).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def sql_through(self, node: str, port: int, query: str, *, host: str | None = None,
                    sslmode: str = "verify-full") -> list[list[str]]:
        """Run ``query`` as the app user from ``node`` (psql there; the password travels on stdin,
        never on a command line) to ``host``'s ``port``, TLS as ``sslmode`` says (verified against
        the stack's CA by default); rows of strings. TargetError with psql's message when it fails.

        Without ``host``: through the node's own HAProxy (``port`` one of its listeners), an entry
        point of the frontend's service: libpq dials the node's address (``hostaddr``) and verifies
        the frontend's name (``host``), which every node's certificate holds, since whichever
        member HAProxy picks answers the handshake."""
        script = ('IFS= read -r PGPASSWORD; export PGPASSWORD; exec psql "host=$1 hostaddr=$5 port=$2 dbname=app '
                  f'user=app connect_timeout=5 sslmode=$4 sslrootcert={TLS_ON_NODE["ca"]}" -XAtq -F "$(printf "\t")" '
                  '-c "$3"')
        address = self.target.address_of(node)
        name, dial = (host, host) if host else (self.target.tls_names()[0], address)
        out = self.ssh(node, ["sh", "-c", script, "sh", name, str(port), query, sslmode, dial],
                       input=self.secrets["app"] + "\n")
        return [line.split("\t") for line in out.stdout.splitlines() if line]

    def on_node(self, node: str) -> list[str]:
        """A command prefix that runs a program on ``node`` over SSH (its arguments quoted for the
        remote shell by whoever appends them: ``deployer.tls_probe`` does): a vantage inside the
        cluster's subnet."""
        return self.target.host(node).ssh_argv("")[:-1]

    def etcdctl(self, node: str, *args: str, endpoints: str | None = None, parse: bool = True) -> dict | list | str:
        """``etcdctl ARGS`` (v3) on ``node``, against ``endpoints`` (comma-separated client URLs;
        default: the node's own member on loopback); its parsed JSON answer (``parse``) or its text."""
        port = self.spec.ports.etcd_client
        argv = ["sudo", "env", "ETCDCTL_API=3", *ETCDCTL_TLS, "etcdctl", "--command-timeout=3s",
                f"--endpoints={endpoints or f'https://127.0.0.1:{port}'}", *(["--write-out=json"] if parse else []), *args]
        out = self.ssh(node, argv).stdout
        return json.loads(out) if parse else out

    def etcd_endpoints(self) -> str:
        """Every member's client URL (HTTPS), comma-separated, in spec order (etcdctl's ``--endpoints``)."""
        return ",".join(f"https://{n.address}:{self.spec.ports.etcd_client}" for n in self.spec.nodes)

    def etcd_leader(self) -> str | None:
        """The node whose etcd member is etcd's leader, as the members report it (asked on a node in
        the network); None if they do not agree on one, or one knows none (an election is on)."""
        node = self.target.vnet_node()
        names = {m["ID"]: m.get("name") for m in self.etcdctl(node, "member", "list")["members"]}
        statuses = self.etcdctl(node, "endpoint", "status", endpoints=self.etcd_endpoints())
        leaders = {s["Status"].get("leader") for s in statuses}  # absent (0) while a member knows no leader
        return names.get(leaders.pop()) if len(leaders) == 1 else None

    def etcd_leader_elsewhere(self) -> dict[str, str | None]:
        """Wait until etcd's members name a leader on another node than Patroni's leader (deadline
        ``ETCD_LEADER_MOVE_S``); both leaders as seen. WaitTimeout naming both otherwise."""
        return wait_until("etcd's leader on another node than Patroni's leader",
                          lambda: {"etcd's leader": self.etcd_leader(), "Patroni's leader": self.leader().name},
                          lambda seen: seen["etcd's leader"] not in (None, seen["Patroni's leader"]),
                          timeout=ETCD_LEADER_MOVE_S)

    def move_etcd_leader(self, to: str) -> None:
        """Hand etcd's leadership to the member on node ``to`` (``etcdctl move-leader``, which finds
        the leader among every member's endpoint); nothing if it leads already."""
        if self.etcd_leader() == to:
            return
        node = self.target.vnet_node()
        ids = {m.get("name"): m["ID"] for m in self.etcdctl(node, "member", "list")["members"]}
        self.etcdctl(node, "move-leader", format(ids[to], "x"), endpoints=self.etcd_endpoints(), parse=False)

    def haproxy_admin(self, node: str, command: str) -> str:
        """Send one command to the node's own HAProxy stats socket (level admin); its answer."""
        script = ("import socket,sys;s=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1]);"
                  "s.sendall(sys.argv[2].encode()+b'\\n');print(b''.join(iter(lambda:s.recv(65536),b'')).decode())")
        sock = role_defaults()["haproxy"]["haproxy_stats_socket"]
        return self.ssh(node, ["sudo", "python3", "-c", script, sock, command]).stdout

    def haproxy_servers(self, node: str) -> dict[str, dict[str, str]]:
        """The node's own HAProxy as it reports itself: ``{listener: {server: status}}``."""
        return {proxy: {server: row["status"] for server, row in rows.items()}
                for proxy, rows in haproxy_stat.servers(self.haproxy_admin(node, "show stat")).items()}

    def testinfra_host(self, node: str):
        """A testinfra host for ``node`` over SSH (the same options as every other SSH user)."""
        import testinfra

        config = self.state.dir / "ssh_config"
        config.write_text("".join(h.ssh_config() for h in self.target.hosts()))
        return testinfra.get_host(f"ssh://{self.target.host(node).node}", ssh_config=str(config), sudo=True)

    def pool_health(self) -> dict[str, bool]:
        """``{member: healthy}`` as the load balancer reports its backend pool."""
        return {m.node: m.healthy for m in self.target.backend_pool()}

    # ----- clients through the load balancer -----

    def dsn(self, port: int, user: str = "app", dbname: str = "app", sslmode: str = "verify-full") -> str:
        """A libpq DSN to the load balancer frontend on ``port``, TLS as ``sslmode`` says (by default
        verified against the stack's CA and the frontend's name). Holds a password: never log it."""
        address, _ = self.target.frontend()
        return (f"host={address} port={port} dbname={dbname} user={user} password={self.secrets[user]} "
                f"{CLIENT_OPTIONS} sslmode={sslmode} sslrootcert={self.target.ca_file}")

    def sql(self, port: int, query: str, sslmode: str = "verify-full") -> list[list[str | None]]:
        """Run ``query`` through the frontend ``port`` from the internet vantage (TLS as ``sslmode``
        says); raises on a SQL error."""
        env = {**os.environ, "PGHA_DSN": self.dsn(port, sslmode=sslmode)}
        argv = [*self.target.vantage(), sys.executable, "-m", "deployer.netprobe", "sql", "PGHA_DSN", query]
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
        if out.returncode != 0:
            raise TargetError(f"SQL probe failed to run: {out.stderr.strip()[-500:]}")
        result = json.loads(out.stdout)
        if "error" in result:
            raise TargetError(f"SQL through {self.target.frontend()[0]}:{port} failed: {result['error']}")
        return result["rows"]
