"""The workload (Jepsen's client) as a process of its own: Locust, headless, started under a
vantage prefix (where clients are), writing uniquely keyed rows through the frontend and recording
every operation in a history (``load/history.py``). Locust monkey-patches with gevent on import, so
it never runs inside the pytest process. The run is bounded by ``duration_s`` and always stopped on
exit. This module knows DSNs and directories, not stacks or targets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from deployer import journal
from deployer.paths import LOCUSTFILE
from deployer.state import StackState
from deployer.wait import wait_until
from load.history import SEQUENTIAL_CLIENTS, Op, read_history

log = logging.getLogger("load.runner")


class Workload:
    """A running Locust process and the history it writes."""

    def __init__(self, proc: subprocess.Popen, history_dir: Path, log_file: Path):
        self.proc, self.history_dir, self.log_file = proc, history_dir, log_file

    def history(self) -> list[Op]:
        """Every operation recorded so far, by start time."""
        return read_history(self.history_dir)

    def _paced(self) -> list[Op]:
        """The acknowledged writes of the Locust writers (client ``locust``), the ones paced at
        ``writes_per_s``: the sequential clients and direct writers sharing the history are not counted,
        so N writes stay N / ``writes_per_s`` seconds of load however many of those run beside them."""
        return [op for op in self.history() if op.kind == "write" and op.outcome == "ok" and op.client == "locust"]

    def ok_writes(self) -> int:
        """The Locust writers' acknowledged writes so far."""
        return len(self._paced())

    def steady_s(self) -> float:
        """Seconds since the Locust writers' first acknowledged write (how long the load has been flowing)."""
        first = min((op.end for op in self._paced()), default=None)
        return 0.0 if first is None else time.time() - first

    def wait_steady(self, seconds: float) -> None:
        """Block until writes have been acknowledged for ``seconds`` (steady load before a fault)."""
        wait_until(f"{seconds:g} s of acknowledged writes", self.steady_s, lambda s: s >= seconds,
                   timeout=seconds + 60, interval=1)

    def wait_for_writes(self, count: int, timeout: float = 30) -> None:
        """Block until the Locust writers have had ``count`` more writes acknowledged (the workload is
        really flowing)."""
        target = self.ok_writes() + count
        wait_until(f"{target} acknowledged writes from the Locust writers", self.ok_writes, lambda n: n >= target,
                   timeout=timeout, interval=0.25)


def locust_users(writers: int) -> int:
    """Locust's ``-u`` for ``writers`` writers: Locust spawns the ``fixed_count`` users (one per
    ``SEQUENTIAL_CLIENTS``) first and gives the rest to the weighted ones, so they come on top;
    ``PGHA_WRITERS`` (the writers' share of ``writes_per_s``) stays ``writers``."""
    return writers + len(SEQUENTIAL_CLIENTS)


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now: each distributed run's master gets its own, so two runs on
    one machine (a drill and the unit tests, say) never share one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(procs: list[subprocess.Popen], grace_s: float) -> None:
    """SIGTERM to every process's group at once, then SIGKILL to any still running after ``grace_s``."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


#: Seconds Locust gets to stop and write its reports after SIGTERM: normally, and when the run was
#: interrupted (Ctrl-C must end a drill within seconds; the reports are then best effort).
STOP_GRACE_S, INTERRUPTED_GRACE_S = 15, 3


@contextlib.contextmanager
def running(vantage: list[str], write_dsn: str, read_dsn: str, run_dir: Path, *, users: int = 4,
            writes_per_s: float = 20, duration_s: float = 180, workers: int = 0,
            state: StackState | None = None) -> Iterator[Workload]:
    """Start the workload under the command prefix ``vantage``: ``users`` Locust writers sharing
    ``writes_per_s`` through ``write_dsn`` and reading through ``read_dsn``, plus the sequential
    clients (``SEQUENTIAL_CLIENTS``, on top: ``locust_users``; not paced by ``writes_per_s``). DSNs
    hold passwords: they travel in the environment only. With ``workers``, Locust runs distributed:
    one master (no users of its own, on a free port of 127.0.0.1) and that many worker processes,
    each writing its own history file, so load can come from more than one machine. History in ``run_dir/history``, Locust's own
    reports as ``run_dir/locust_*.csv`` and ``run_dir/locust.html``. Every process runs in a session
    of its own (a terminal's Ctrl-C reaches only this one) and, given the stack's ``state``, is
    recorded in the fault journal while it runs (``deployer.journal``: a run that dies leaves them
    for ``heal_leftovers`` to end). On exit every process is stopped at once (SIGTERM, SIGKILL after
    ``STOP_GRACE_S``, or ``INTERRUPTED_GRACE_S`` when a KeyboardInterrupt ends the body) and waited for."""
    history_dir = run_dir / "history"
    history_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PGHA_WRITE_DSN": write_dsn, "PGHA_READ_DSN": read_dsn, "PGHA_HISTORY_DIR": str(history_dir),
           "PGHA_RUN_ID": run_dir.name, "PGHA_WRITES_PER_S": str(writes_per_s), "PGHA_WRITERS": str(users)}
    locust = [*vantage, sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    total = locust_users(users)
    master = [*locust, "--headless", "-u", str(total), "-r", str(total), "-t", f"{int(duration_s)}s",
              "--only-summary", "--stop-timeout", "5", "--csv", str(run_dir / "locust"), "--html", str(run_dir / "locust.html")]
    port = _free_port()
    if workers:
        master += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                   "--expect-workers", str(workers)]
    log_file = run_dir / "locust.log"
    log.info("Workload: %d Locust writers and the sequential clients %s, %g writes/s, %s, at most %d s.", users,
             ", ".join(SEQUENTIAL_CLIENTS), writes_per_s,
             f"{workers} workers under one master" if workers else "one process", duration_s)
    started = time.monotonic()
    procs, entries, grace = [], [], STOP_GRACE_S

    def start(what: str, argv: list[str], out) -> None:
        procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        if state is not None:
            entries.append(journal.record_process(state, f"{what} of a drill's workload", procs[-1].pid))

    try:
        with open(log_file, "w") as out:
            start("the Locust master" if workers else "Locust", master, out)
            for i in range(workers):
                with open(run_dir / f"locust-worker-{i + 1}.log", "w") as wout:
                    start(f"Locust worker {i + 1}", [*locust, "--worker", "--master-host", "127.0.0.1",
                                                     "--master-port", str(port)], wout)
        yield Workload(procs[0], history_dir, log_file)
    except KeyboardInterrupt:
        grace = INTERRUPTED_GRACE_S
        raise
    finally:
        with journal.shielded():
            _stop(procs, grace)
            for entry in entries:
                journal.remove(state, entry)
        log.info("Workload stopped after %.0f s (exit %s).", time.monotonic() - started, procs[0].returncode if procs else None)
