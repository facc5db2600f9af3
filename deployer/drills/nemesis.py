"""Faults with a guaranteed heal (Jepsen's nemesis): each is a context manager ``fault(stack, node)``
whose heal runs in ``finally``, also on failure, Ctrl-C, SIGTERM and SIGHUP. Each fault is written
to the fault journal (``deployer.journal``) before it is applied, with its heal as data (the calls
the heal runs), and removed after its heal: a run that dies leaves it for the next ``deployer up``,
``deployer heal`` or suite session to heal (``deployer.leftover_faults``).

Process faults go through SSH and are the same on every target; infrastructure faults call the
target's primitives (``crash_vm``/``start_vm``, ``isolate``/``heal``), which only targets with the
matching capability implement (``deployer.targets.base.CAPABILITIES``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import ContextManager

from deployer import backups, inventory, journal, patroni
from deployer.stack import Stack
from deployer.wait import wait_until

log = logging.getLogger("deployer.nemesis")

Fault = Callable[[Stack, str], ContextManager[None]]


@contextlib.contextmanager
def _injected(stack: Stack, what: str, inject: Callable[[], object], heal: list[journal.Call], healed: str,
              node: str | None = None, key: str | None = None) -> Iterator[None]:
    """Journal the fault (with ``heal``, the calls that end it), inject it, run the body, heal: the
    journal entry is written before ``inject`` and removed after ``heal`` succeeded, so a run that
    dies meanwhile leaves it for ``heal_leftovers``. SIGINT/SIGTERM/SIGHUP stop the body
    (``journal.interruptible``) and are held off while healing (``journal.shielded``)."""
    entry = journal.record(stack.state, what, heal=heal, healed=healed, node=node, key=key)
    log.info("Fault: %s.", what)
    try:
        with journal.interruptible():
            inject()
            yield
    finally:
        log.info("Heal: %s ends (%s).", what, healed)
        with journal.shielded():
            journal.run_heal(stack, heal)
            journal.remove(stack.state, entry)


def _ssh(node: str, *argv: str) -> journal.Call:
    return ["ssh", node, list(argv)]


def stopped_service(unit: str) -> Fault:
    """``systemctl stop UNIT`` on a node; heal: start it again."""
    def fault(stack: Stack, node: str) -> ContextManager[None]:
        return _injected(stack, f"{unit} stopped on {node}",
                         lambda: stack.ssh(node, ["sudo", "systemctl", "stop", unit]),
                         [_ssh(node, "sudo", "systemctl", "start", unit)], "started it again", node)
    return fault


def killed_postmaster(stack: Stack, node: str) -> ContextManager[None]:
    """``kill -9`` the postmaster on a node (its backends die with it); heal: Patroni restarts it in
    place on its next loop, and ``systemctl start patroni`` makes sure Patroni itself runs."""
    script = 'kill -9 "$(head -1 "$(sudo -u postgres psql -XAtc "SHOW data_directory")/postmaster.pid")"'
    return _injected(stack, f"PostgreSQL's postmaster on {node} killed (SIGKILL)",
                     lambda: stack.ssh(node, ["sudo", "sh", "-c", script]),
                     [_ssh(node, "sudo", "systemctl", "start", "patroni")],
                     "made sure Patroni runs (it starts PostgreSQL again)", node)


#: How a signal leaves Patroni, for the journal.
SIGNALLED = {"STOP": "frozen (SIGSTOP)", "KILL": "killed (SIGKILL)"}


def signalled_patroni(signal: str, then: str | None = None) -> Fault:
    """Send ``signal`` to Patroni's main process on a node (systemd ``--kill-who=main``: PostgreSQL,
    its child, is spared); heal: send ``then`` (e.g. CONT after STOP), then ``systemctl start patroni``
    (systemd restarts a killed Patroni by itself; the start makes sure)."""
    def signal_patroni(sig: str) -> list[str]:
        return ["sudo", "systemctl", "kill", "--kill-who=main", "-s", sig, "patroni"]

    def fault(stack: Stack, node: str) -> ContextManager[None]:
        heal = [["target.wait_for_ssh", node]]  # a watchdog may have reset the VM meanwhile
        heal += [_ssh(node, *signal_patroni(then))] if then else []
        heal += [_ssh(node, "sudo", "systemctl", "start", "patroni")]
        return _injected(stack, f"Patroni on {node} {SIGNALLED.get(signal, f'sent SIG{signal}')}",
                         lambda: stack.ssh(node, signal_patroni(signal)), heal,
                         f"sent SIG{then} and started it" if then else "started it", node)
    return fault


def stopped_on_majority(unit: str) -> Fault:
    """``systemctl stop UNIT`` on a majority of the nodes, ``node`` first, then the next ones in spec
    order (for etcd: its quorum is lost); heal: start it on all of them, also if a stop failed."""
    def fault(stack: Stack, node: str) -> ContextManager[None]:
        names = [n.name for n in stack.spec.nodes]
        i = names.index(node)
        chosen = (names[i:] + names[:i])[:len(names) // 2 + 1]
        return _injected(stack, f"{unit} stopped on {', '.join(chosen)} (a majority)",
                         lambda: [stack.ssh(n, ["sudo", "systemctl", "stop", unit]) for n in chosen],
                         [_ssh(n, "sudo", "systemctl", "start", unit) for n in chosen], "started it on each")
    return fault


@contextlib.contextmanager
def crashed_cluster(stack: Stack, node: str) -> Iterator[None]:
    """Crash every VM (``crashed_vm``), ``node`` first; heal: each is started again, in reverse order,
    every heal attempted even if one fails (capability ``crash_vm``)."""
    with contextlib.ExitStack() as faults:
        for name in [node] + [n.name for n in stack.spec.nodes if n.name != node]:
            faults.enter_context(crashed_vm(stack, name))
        yield


def _haproxy_disabled(what: str) -> Fault:
    """``disable WHAT`` in one node's own HAProxy (its stats socket); heal: ``enable WHAT``."""
    def fault(stack: Stack, node: str) -> ContextManager[None]:
        return _injected(stack, f"{node}'s HAProxy: {what} disabled",
                         lambda: stack.haproxy_admin(node, f"disable {what}"),
                         [["haproxy_admin", node, f"enable {what}"]], "enabled it again", node)
    return fault


def server_in_maintenance(listener: str, server: str) -> Fault:
    """Put ``listener``/``server`` into maintenance in one node's own HAProxy, so that node no
    longer routes to it; heal: back in service."""
    return _haproxy_disabled(f"server {listener}/{server}")


def frontend_disabled(frontend: str) -> Fault:
    """Stop one node's own HAProxy ``frontend`` from listening (for ``health``, the load balancer's
    probes then fail while routing goes on); heal: it listens again."""
    return _haproxy_disabled(f"frontend {frontend}")


def isolated(stack: Stack, node: str) -> ContextManager[None]:
    """Cut a node off the network (capability ``isolate``); heal: reconnect it."""
    return _injected(stack, f"{node} isolated", lambda: stack.target.isolate(node), [["target.heal", node]],
                     "reconnected it", node, key=f"isolated:{node}")


def crashed_vm(stack: Stack, node: str) -> ContextManager[None]:
    """Power a VM off without shutdown (capability ``crash_vm``); heal: start it, until SSH answers."""
    return _injected(stack, f"VM {node} crashed", lambda: stack.target.crash_vm(node), [["target.start_vm", node]],
                     "started it again", node, key=f"stopped:{node}")


@contextlib.contextmanager
def switchover(stack: Stack, node: str) -> Iterator[None]:
    """Planned switchover away from the leader ``node`` (Patroni ``POST /switchover``, authenticated;
    Patroni picks the healthiest replica). Nothing to heal: the cluster stays whole."""
    log.info("Fault: planned switchover away from %s.", node)
    patroni.post(stack.target, node, "/switchover", {"leader": node}, stack.secrets["rest_api"], timeout=30)
    yield


def data_directory_lost(stack: Stack, node: str) -> ContextManager[None]:
    """A node's data directory deleted (Patroni stopped first, then started on the empty directory, so
    Patroni re-creates the member by its replica methods); heal: Patroni started, should it be down."""
    data = inventory.data_dir(stack.spec)

    def lose() -> None:
        stack.ssh(node, ["sudo", "systemctl", "stop", "patroni"], timeout=120)
        stack.ssh(node, ["sudo", "find", data, "-mindepth", "1", "-delete"], timeout=120)
        stack.ssh(node, ["sudo", "systemctl", "start", "patroni"])
    return _injected(stack, f"{node}'s data directory deleted", lose,
                     [_ssh(node, "sudo", "systemctl", "start", "patroni")], "started Patroni", node)


@contextlib.contextmanager
def backup_then_switchover(stack: Stack, node: str) -> Iterator[None]:
    """A full backup starts on the leader ``node`` and, while it runs, a planned switchover away from
    it; the backup's outcome is in ``BACKUP_OUTCOME`` (``ok`` or its message) once it ended."""
    started = threading.Event()

    def backup() -> None:
        started.set()
        try:
            BACKUP_OUTCOME["result"] = backups.take(stack, "full")
        except Exception as exc:  # the outcome is what the drill judges
            BACKUP_OUTCOME["result"] = f"failed: {exc}"
    BACKUP_OUTCOME.clear()
    thread = threading.Thread(target=backup, daemon=True)
    thread.start()
    started.wait()
    wait_backup_running(stack, node)
    with switchover(stack, node):
        yield
    thread.join(timeout=600)


#: ``backup_then_switchover``'s backup: its account (``backups.take``) or ``failed: <message>``.
BACKUP_OUTCOME: dict[str, str] = {}


def wait_backup_running(stack: Stack, node: str) -> None:
    """Until pgBackRest holds its backup lock on ``node`` (the backup really runs)."""
    wait_until(f"a pgBackRest backup running on {node}", lambda: backups.pgbackrest(
        stack, node, "--output=json", "info").stdout, lambda out: '"held":true' in out.replace(" ", ""), timeout=30,
        interval=0.2)
