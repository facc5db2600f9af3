"""What a drill sees of the platform while the workload runs, beside the clients' history: the DCS
leader key (an etcd watch), each node's HAProxy routing (its own stats socket), direct writes to
every node's PostgreSQL from inside the network (the path a zombie primary would still serve), and
the load balancer's pool health.

Node-side watchers are long-lived scripts started over SSH (``deployer/drills/onnode/``), secrets on
stdin, one JSON line per observation on stdout; each line is stamped with this host's clock on
arrival, so every event lines up with the fault marks and the Locust history. A watcher on a node
that a fault takes down simply stops reporting. Everything is stopped on exit, also on failure;
each watcher's SSH client is in the fault journal (``deployer.journal``) while it runs. Ending that
client ends the script on the node: its output breaks (or, for the direct writer, its stdin
closes) and it exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deployer import haproxy_stat, journal
from deployer.inventory import TLS_ON_NODE, role_defaults
from deployer.stack import Stack
from load.history import HistoryWriter, Op

log = logging.getLogger("deployer.observer")

ONNODE = Path(__file__).parent / "onnode"
#: Seconds between two looks of a node-side watcher, and of the load balancer's pool.
PERIOD_S = 0.25
POOL_PERIOD_S = 1.0
#: Seconds a graceful node-side script has to finish its last attempt (direct writes time out in 2 s).
GRACE_S = 5


@dataclass
class Observations:
    """What was seen, by arrival time: ``leader_key``: (t, "PUT"|"DELETE", holder or None) of the
    DCS leader key; ``routing``: (t, node, servers UP in that node's HAProxy primary listener);
    ``pool``: (t, {node: healthy}) from the load balancer; direct writes go to the history."""

    leader_key: list[tuple[float, str, str | None]] = field(default_factory=list)
    routing: list[tuple[float, str, tuple[str, ...]]] = field(default_factory=list)
    pool: list[tuple[float, dict[str, bool]]] = field(default_factory=list)

    def leader_key_gone(self, after: float) -> float | None:
        """When the leader key was first deleted (expired or released) after ``after``."""
        return next((t for t, what, _ in self.leader_key if t >= after and what == "DELETE"), None)

    def routed(self, after: float, nodes: list[str], leader: str) -> float | None:
        """The first time after ``after`` at which every one of ``nodes`` had routed its primary
        listener to ``leader`` alone (each node's latest look at that time)."""
        latest: dict[str, tuple[str, ...]] = {}
        for t, node, up in self.routing:
            latest[node] = up
            if t >= after and all(latest.get(n) == (leader,) for n in nodes):
                return t
        return None


class _Stream:
    """One node-side watcher: the SSH process and the thread reading its lines."""

    def __init__(self, stack: Stack, node: str, script: str, args: list[str], stdin: str | None, on_line):
        """``stdin``: None for a watcher that is simply terminated; else its first line, and the
        script stops gracefully (finishing and reporting what it was doing) when stdin closes."""
        code = (ONNODE / script).read_text()
        argv = stack.target.host(node).ssh_argv(["sudo", *args[:1], "-c", code, *args[1:]])
        self.node, self.state = node, stack.state
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, start_new_session=True)
        self.entry = journal.record_process(stack.state, f"the drill observer {script} on {node} (its SSH client)",
                                            self.proc.pid)
        if stdin is None:
            self.proc.stdin.close()
        else:
            self.proc.stdin.write(stdin)
            self.proc.stdin.flush()
        self.thread = threading.Thread(target=self._read, args=(on_line,), daemon=True, name=f"observe-{script}-{node}")
        self.thread.start()

    def _read(self, on_line) -> None:
        for line in self.proc.stdout:
            try:
                on_line(time.time(), json.loads(line))
            except (ValueError, KeyError, TypeError):
                log.debug("observer %s: unreadable line %r", self.node, line[:200])

    def stop(self, graceful: bool = True) -> None:
        """Close stdin (with ``graceful``, a graceful script finishes within ``GRACE_S``), then
        terminate; the journal entry goes once the process has ended."""
        if not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=GRACE_S if graceful else 0.1)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        journal.remove(self.state, self.entry)
        self.thread.join(timeout=5)


def _poll_pool(stack: Stack, seen: Observations, stop: threading.Event) -> None:
    while not stop.wait(max(POOL_PERIOD_S, stack.target.readback_latency_s)):
        with contextlib.suppress(Exception):  # a read-back failing mid-fault is not an observation
            seen.pool.append((time.time(), stack.pool_health()))


@contextlib.contextmanager
def observing(stack: Stack, victim: str, history_dir: Path, *, direct: bool = True) -> Iterator[Observations]:
    """Watch the stack while the body runs: the leader key and direct writes from ``watcher`` (the
    first node that is not ``victim``), every node's HAProxy from itself, the pool from here. With
    ``direct``, direct writes are recorded in ``history_dir/history-direct.jsonl`` (client
    ``direct``, keys ``<history_dir's run id>-direct-<address>-<n>``). Every watcher's SSH client is
    in the fault journal while it runs; interrupted (KeyboardInterrupt), watchers are terminated
    without their graceful finish."""
    seen, stop, streams, graceful = Observations(), threading.Event(), [], True
    watcher = stack.target.vnet_node(avoid=victim)
    spec, ports = stack.spec, stack.spec.ports
    key = f"{role_defaults()['patroni']['patroni_namespace'].rstrip('/')}/{spec.patroni.scope}/leader"
    socket = role_defaults()["haproxy"]["haproxy_stats_socket"]
    writer = HistoryWriter(history_dir / "history-direct.jsonl") if direct else None

    def on_key(t: float, event: dict) -> None:
        seen.leader_key.append((t, event["type"], event.get("value")))

    def on_stat(node: str):
        def on_line(t: float, text: str) -> None:
            rows = haproxy_stat.servers(text).get("primary", {})
            seen.routing.append((t, node, tuple(sorted(s for s, row in rows.items() if haproxy_stat.is_up(row)))))
        return on_line

    def on_write(_t: float, op: dict) -> None:
        writer.write(Op(**op, client="direct"))

    pool = threading.Thread(target=_poll_pool, args=(stack, seen, stop), daemon=True, name="observe-pool")
    try:
        streams.append(_Stream(stack, watcher, "leader_watch.py", ["python3", key, stack.etcd_endpoints(), *TLS_ON_NODE.values()], None, on_key))
        for node in spec.nodes:
            streams.append(_Stream(stack, node.name, "haproxy_watch.py", ["python3", socket, str(PERIOD_S)], None,
                                   on_stat(node.name)))
        if direct:
            config = {"addresses": [str(n.address) for n in spec.nodes], "port": ports.postgres, "ca": TLS_ON_NODE["ca"],
                      "password": stack.secrets["app"], "prefix": f"{history_dir.parent.name}-direct",
                      "period": PERIOD_S}
            streams.append(_Stream(stack, watcher, "direct_writer.py", [f"{role_defaults()['patroni']['patroni_venv']}/bin/python"],
                                   json.dumps(config) + "\n", on_write))
        pool.start()
        yield seen
    except KeyboardInterrupt:
        graceful = False
        raise
    finally:
        stop.set()
        with journal.shielded():
            for stream in reversed(streams):  # the direct writer first: its last attempts belong to the history
                stream.stop(graceful)
        if pool.is_alive():
            pool.join(timeout=30)
        if writer is not None:
            writer.close()
