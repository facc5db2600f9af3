"""The fault journal: every fault a run applies and every helper process it starts, recorded in the
stack's state (``state.data["journal"]``) so that another process can end them when the run dies.

Promises:

- **Before, not after.** A fault is recorded BEFORE it is applied (``record``) and removed only
  after its heal succeeded (``remove``); a helper process is recorded as soon as it has a pid and
  removed once it has ended. A run killed at any point (``kill -9``, a lost terminal) leaves a
  record of everything it may have left on, never a fault without a record.
- **Healable from elsewhere.** An entry holds its heal as data: calls ``[name, *args]`` of
  ``HEAL_CALLS``, run in order by ``run_heal`` on a ``deployer.stack.Stack`` (names starting
  ``target.`` on its target). The nemesis heals through the same calls, so a heal from another
  process is the heal the run itself would have done. ``deployer.leftover_faults.heal_leftovers``
  heals the entries of dead runs.
- **Owned.** Each entry names its owner: ``{"pid", "started", "host"}`` of the process that
  recorded it (``started``: the kernel's start time of that pid, so a reused pid is not the same
  process). An entry whose owner may still run (``owner_alive``) is never touched by another process.
- **One mechanism.** The target's own fault marks (``Target._mark``: ``isolated``, ``stopped``)
  are entries too, keyed ``"<kind>:<node>"``; ``record`` with an existing key keeps one entry (and
  takes it over), so the nemesis's record and the target's mark of one fault are one entry.
- **No lost writes.** Journal writes are serialised by a lock file in the state dir and merged
  into the state on disk, so they never revert what another process recorded meanwhile; the
  in-memory state gets the same journal.

An entry: ``id``, ``key`` (or None), ``kind`` (``fault`` | ``process``), ``node`` (or None),
``what`` ("Patroni on pg1 frozen (SIGSTOP)"), ``healed`` ("sent SIGCONT and started it"), ``heal``
(calls), ``pid``/``started`` (a process: the leader of its own session, whose whole group is
ended), ``owner``, ``at`` (epoch seconds).

Signals: ``interruptible()`` makes SIGINT, SIGTERM and SIGHUP raise ``Interrupted`` (a
``KeyboardInterrupt``) in the main thread while a drill or fault runs, whatever this process
inherited. Python leaves SIGINT ignored when it started ignored (a run started with ``cmd &`` from
a non-interactive shell or a job runner: ``kill -INT`` then does nothing, and the drill ran to its
end), and SIGTERM/SIGHUP kill it without running a single ``finally``. ``shielded()`` holds them
off while a heal runs and raises right after it (a second signal during the heal raises at once).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from deployer.state import StackState
from deployer.wait import WaitTimeout, wait_until

log = logging.getLogger("deployer.journal")

JOURNAL = "journal"
#: What a recorded heal may call: Stack methods, and ``target.X`` on its target.
HEAL_CALLS = frozenset({"ssh", "haproxy_admin", "target.heal", "target.start_vm", "target.wait_for_ssh"})
#: Signals that stop a drill (and heal it) instead of killing the process outright.
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
Call = list[Any]


class Interrupted(KeyboardInterrupt):
    """A signal asked the run to stop (SIGINT, SIGTERM or SIGHUP); its message names the signal."""


# ----- processes -----

def started(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, field 22 of ``/proc/PID/stat``);
    None when there is no such process or it is a zombie (it has ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def me() -> dict:
    """This process as an owner: ``{"pid", "started", "host"}``."""
    return {"pid": os.getpid(), "started": started(os.getpid()), "host": socket.gethostname()}


def runs(process: dict) -> bool:
    """Whether the process ``{"pid", "started"}`` (on this host) still runs: same pid, same start."""
    return process.get("started") is not None and started(process["pid"]) == process["started"]


def owner_alive(entry: dict) -> bool:
    """False only when the entry's owner certainly ended (on this host, that pid is gone or another
    process); an owner on another host counts as alive (nothing here can tell)."""
    owner = entry.get("owner") or {}
    return owner.get("host") != socket.gethostname() or runs(owner)


def end_process(entry: dict, grace_s: float = 5.0) -> str | None:
    """End a recorded process and its session's group: SIGTERM, SIGKILL after ``grace_s``. Returns
    how it ended ("SIGTERM" | "SIGKILL"), None when it had ended already (nothing was sent)."""
    if not runs(entry):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(entry["pid"], signal.SIGTERM)
    with contextlib.suppress(WaitTimeout):  # not our child: no wait() to block in, so poll
        wait_until(f"process {entry['pid']} to end after SIGTERM", lambda: not runs(entry), timeout=grace_s,
                   interval=0.05)
        return "SIGTERM"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(entry["pid"], signal.SIGKILL)
    return "SIGKILL"


# ----- the journal -----

@contextlib.contextmanager
def _locked(state: StackState) -> Iterator[None]:
    state.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(state.dir / "journal.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _update(state: StackState, change: Callable[[list[dict]], list[dict]]) -> list[dict]:
    with _locked(state):
        path = state.dir / "state.json"
        disk = StackState.model_validate_json(path.read_text()) if path.exists() else state
        entries = change([dict(e) for e in disk.data.get(JOURNAL, [])])
        disk.data[JOURNAL] = entries
        state.data[JOURNAL] = [dict(e) for e in entries]
        disk.save()
    return entries


def entries(state: StackState) -> list[dict]:
    """The journal as recorded now (on disk, every process's entries), in recording order."""
    path = state.dir / "state.json"
    data = StackState.model_validate_json(path.read_text()).data if path.exists() else state.data
    return [dict(e) for e in data.get(JOURNAL, [])]


def record(state: StackState, what: str, *, heal: Iterable[Call] = (), healed: str = "", node: str | None = None,
           key: str | None = None, kind: Literal["fault", "process"] = "fault", **extra: Any) -> str:
    """Record a fault (before applying it) or a process; its entry id. An entry with the same
    ``key`` is kept and taken over (this process becomes its owner), not duplicated."""
    for name, *_ in heal:
        if name not in HEAL_CALLS:
            raise ValueError(f"heal call {name!r} is not one of {sorted(HEAL_CALLS)}")
    entry = {"id": uuid.uuid4().hex[:12], "key": key, "kind": kind, "node": node, "what": what, "healed": healed,
             "heal": [list(c) for c in heal], "owner": me(), "at": round(time.time(), 3), **extra}
    kept: list[str] = []

    def change(found: list[dict]) -> list[dict]:
        for e in found:
            if key is not None and e.get("key") == key:
                e["owner"] = entry["owner"]
                kept.append(e["id"])
                return found
        return found + [entry]
    _update(state, change)
    return kept[0] if kept else entry["id"]


def record_process(state: StackState, what: str, pid: int) -> str:
    """Record a helper process this run started in a session of its own (``start_new_session``):
    ending it ends its whole process group."""
    return record(state, what, kind="process", pid=pid, started=started(pid))


def remove(state: StackState, entry_id: str | None = None, *, key: str | None = None) -> None:
    """Remove the entry ``entry_id`` (or the one keyed ``key``); nothing when it is gone already."""
    _update(state, lambda found: [e for e in found if not ((entry_id and e["id"] == entry_id)
                                                           or (key and e.get("key") == key))])


def run_heal(stack, calls: Iterable[Call]) -> None:
    """Run recorded heal calls in order on ``stack`` (``target.X`` on ``stack.target``); the first
    failure raises."""
    for name, *args in calls:
        if name not in HEAL_CALLS:
            raise ValueError(f"heal call {name!r} is not one of {sorted(HEAL_CALLS)}")
        owner = stack.target if name.startswith("target.") else stack
        getattr(owner, name.removeprefix("target."))(*args)


@contextlib.contextmanager
def journaled(state: StackState, what: str, **fields: Any) -> Iterator[str]:
    """``record`` before the body, ``remove`` after it returns or raises (for a body that ends
    what it recorded itself, e.g. stops the process)."""
    entry = record(state, what, **fields)
    try:
        yield entry
    finally:
        remove(state, entry)


# ----- signals -----

def _handlers(handler) -> dict[int, Any] | None:
    if threading.current_thread() is not threading.main_thread():
        return None  # only the main thread may set handlers, and only it gets signals
    return {s: signal.signal(s, handler) for s in SIGNALS}


def _restore(previous: dict[int, Any] | None) -> None:
    for sig, handler in (previous or {}).items():
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _interrupt(signum: int, _frame=None) -> None:
    raise Interrupted(f"{signal.Signals(signum).name} received")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """While the body runs (in the main thread), SIGINT, SIGTERM and SIGHUP raise ``Interrupted``;
    the previous handlers come back after it."""
    previous = _handlers(_interrupt)
    try:
        yield
    finally:
        _restore(previous)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold off SIGINT, SIGTERM and SIGHUP while the body (a heal) runs: the first one is raised as
    ``Interrupted`` once the body has returned, a second one at once."""
    pending: list[int] = []

    def hold(signum: int, _frame) -> None:
        if pending:
            _interrupt(signum)
        pending.append(signum)
        log.warning("%s received: healing first, then stopping (send it again to stop at once).",
                    signal.Signals(signum).name)
    previous = _handlers(hold)
    try:
        yield
    finally:
        _restore(previous)
    if pending:
        _interrupt(pending[0])
