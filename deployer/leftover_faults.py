"""What a run that died left on a stack, and nodes that cannot answer: the two things that made the
next ``deployer up`` sit in configure for minutes without a word.

``heal_leftovers(state, target)`` ends every fault and helper process the fault journal
(``deployer.journal``) holds from a run that died, and says so, one sentence each. Callers:
``deployer up`` before configure, ``deployer heal`` after the seeded defects, and the suites'
session fixture when it attaches. ``check_nodes_answer(target)`` is ``up``'s readiness check before
configure on an existing stack: every node answers SSH and its Patroni is neither stopped nor hung,
within ``ANSWER_S``, else one ``TargetError`` naming the node and what did not answer.
"""

from __future__ import annotations

import datetime
import logging
import subprocess

import requests

from deployer import journal
from deployer.state import StackState
from deployer.targets import Target, TargetError
from deployer.wait import WaitTimeout, wait_until

log = logging.getLogger("deployer.leftovers")

#: Seconds each node has to answer SSH, and then its Patroni REST API, before ``up`` configures it.
ANSWER_S = 30
#: Seconds one SSH command of the readiness check may take (sshd's own ConnectTimeout is 5 s).
SSH_COMMAND_S = 15


def _since(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _stack_for(state: StackState, target: Target):
    from deployer.stack import Stack  # the heal calls' receiver, built only when a fault needs one

    stack = Stack(target.spec, state)
    stack.target = target
    return stack


def heal_leftovers(state: StackState, target: Target, stack=None) -> list[str]:
    """Heal what runs that died left on: every journal entry whose owner has ended. Helper
    processes first (SIGTERM to their group, SIGKILL after 5 s; one that had ended already is only
    forgotten), then faults, newest first, each by its recorded heal calls (on ``stack``, else a
    ``Stack`` of ``state`` and ``target``). Returns one sentence per process ended, fault healed or
    heal that failed (that entry stays, for the next attempt), and per entry left alone because the
    run that owns it still runs; empty when nothing was left. Never raises for a failed heal: the
    sentence says it, and ``check_nodes_answer`` stops ``up`` where a node still cannot answer."""
    sentences: list[str] = []
    found = journal.entries(state)
    mine = journal.me()
    for entry in found:
        owner = entry.get("owner") or {}
        if journal.owner_alive(entry) and owner.get("pid") != mine["pid"]:
            sentences.append(f"{entry['what']}: left alone, the run that recorded it (pid {owner.get('pid')} on "
                             f"{owner.get('host')}, since {_since(entry['at'])}) still runs.")
    dead = [e for e in found if not journal.owner_alive(e)]
    for entry in (e for e in dead if e["kind"] == "process"):
        how = journal.end_process(entry)
        journal.remove(state, entry["id"])
        if how:
            sentences.append(f"{entry['what'][:1].upper()}{entry['what'][1:]} (pid {entry['pid']}) still ran, started by a run that "
                             f"died (pid {entry['owner']['pid']}) at {_since(entry['at'])}: ended it ({how}).")
    for entry in reversed([e for e in dead if e["kind"] == "fault"]):
        left = (f"{entry['what']}: left by a run that died (pid {entry['owner']['pid']}, fault applied at "
                f"{_since(entry['at'])})")
        try:
            stack = stack or _stack_for(state, target)
            journal.run_heal(stack, entry["heal"])
        except Exception as exc:  # noqa: BLE001 - said, kept in the journal, tried again next time
            sentences.append(f"{left}; its heal failed ({type(exc).__name__}: {str(exc)[:300]}); it stays in "
                             f"the journal and the next `deployer heal`, `deployer up` or suite session tries again.")
            continue
        journal.remove(state, entry["id"])
        sentences.append(f"{left}: {entry['healed']}.")
    return sentences


def unhealed(state: StackState) -> list[str]:
    """What runs that died left and ``heal_leftovers`` could not heal (yet), one line each."""
    return [e["what"] for e in journal.entries(state) if not journal.owner_alive(e)]


#: On a node: Patroni's main pid and its process state (``ps``'s STAT: T = stopped), or nothing.
_PATRONI_STATE = 'pid=$(systemctl show -p MainPID --value patroni 2>/dev/null); ' \
                 '[ "${pid:-0}" != 0 ] && echo "$pid $(ps -o stat= -p "$pid")" || true'


def _ssh_answer(target: Target, node: str) -> str:
    proc = subprocess.run(target.host(node).ssh_argv(["sh", "-c", _PATRONI_STATE]), capture_output=True, text=True,
                          timeout=SSH_COMMAND_S)
    if proc.returncode == 255:  # ssh's own failure, not the command's
        raise TargetError(proc.stderr.strip()[-300:] or "ssh exited 255")
    return proc.stdout.strip()


def _rest_answer(target: Target, node: str) -> str:
    try:
        resp = requests.get(f"{target.patroni_url(node)}/patroni", verify=target.ca_file, timeout=3)
    except requests.ConnectTimeout:
        raise
    except requests.ConnectionError:
        return "refused (nothing listens: configure starts it)"
    return f"HTTP {resp.status_code}"


def check_nodes_answer(target: Target) -> None:
    """Before configure on an existing stack: every node answers a command over SSH, its Patroni
    process is not stopped (SIGSTOP: state T), and its Patroni REST API answers (any HTTP status)
    or refuses outright (nothing listens yet: configure starts it), each within ``ANSWER_S``
    (scaled by the timeout multiplier). Raises ``TargetError`` naming the first node and what did
    not answer, with what was last seen; returns None when all answer."""
    for node in (n.name for n in target.spec.nodes):
        host = target.host(node)
        try:
            seen = wait_until(f"{node} to run a command over SSH ({host.ssh_host}:{host.ssh_port})",
                              lambda: _ssh_answer(target, node), lambda _: True, timeout=ANSWER_S)
        except WaitTimeout as exc:
            raise TargetError(f"{node} did not answer over SSH ({host.ssh_host}:{host.ssh_port}): {exc}") from None
        pid, _, stat = seen.partition(" ")
        if stat.startswith("T"):
            raise TargetError(f"Patroni on {node} (pid {pid}) is stopped (process state {stat}: SIGSTOP or a "
                              f"debugger), so its REST API cannot answer and configure would wait on it; no run "
                              f"that died recorded it: `sudo systemctl kill --kill-who=main -s CONT patroni` on "
                              f"{node} continues it")
        try:
            wait_until(f"{node}'s Patroni REST API ({target.patroni_url(node)}/patroni) to answer",
                       lambda: _rest_answer(target, node), timeout=ANSWER_S)
        except WaitTimeout as exc:
            raise TargetError(f"{node}'s Patroni REST API did not answer (a hung Patroni: it accepts "
                              f"connections but never replies; configure would wait on it): {exc}") from None
