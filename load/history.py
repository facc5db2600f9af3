"""The operation history (Jepsen's history): one record per operation the workload attempted.

Every operation has three outcomes: ``ok`` (acknowledged), ``fail`` (certainly did not happen) and
``unknown`` (the statement may or may not have been applied: the connection was lost or timed out
after it was sent). Counting an unknown as a failure invents lost writes; counting it as a success
hides them. The set checker (``deployer/drills/checkers.py``) treats unknowns as "may be present".

Each workload process appends JSON lines to its own file (``history-<pid>.jsonl``); timestamps are
wall clock (``time.time()``) so histories from several processes line up with fault timestamps.
This module imports neither Locust nor gevent: pytest reads histories with it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: The table every workload writes, and its schema (the drill creates it before the load starts).
TABLE = "drill_history"
SCHEMA = f"CREATE TABLE IF NOT EXISTS {TABLE} (key text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"

Kind = Literal["write", "read"]
Outcome = Literal["ok", "fail", "unknown"]
Client = Literal["locust", "sequential", "sequential-short-timeout", "direct"]
#: The sequential clients (one Locust user each, one write at a time on a kept connection through the
#: frontend): ``sequential`` with the application's libpq settings as the DSN gives them, and
#: ``sequential-short-timeout`` abandoning a connect or an operation after about 2 s.
SEQUENTIAL_CLIENTS: tuple[Client, ...] = ("sequential", "sequential-short-timeout")
#: Who issued an operation (see ``Op.client``).
CLIENTS: tuple[Client, ...] = ("locust", *SEQUENTIAL_CLIENTS, "direct")


@dataclass(frozen=True)
class Op:
    """One completed operation.

    ``start``/``end``: wall clock seconds around the whole operation (connect included).
    ``server``: ``inet_server_addr()`` of the server that answered (None when none answered).
    ``timeline``: the answering primary's WAL timeline for writes (None when unknown).
    ``error``: why it was not ``ok``; for an ``ok`` read, ``"stale"`` when the key was not visible yet.
    ``client``: who issued it (one of ``CLIENTS``): ``"locust"`` (the Locust users through the load
    balancer's frontend), one of ``SEQUENTIAL_CLIENTS`` (one client through the frontend, one attempt
    at a time) or ``"direct"`` (a writer inside the network straight to one node's PostgreSQL
    address; ``server`` is that node). Records written before the field existed read as ``"locust"``.
    """

    kind: Kind
    key: str
    start: float
    end: float
    outcome: Outcome
    server: str | None = None
    error: str | None = None
    timeline: int | None = None
    client: Client = "locust"

    def __post_init__(self):
        if self.kind not in ("write", "read"):
            raise ValueError(f"Op kind must be write or read, not {self.kind!r}")
        if self.outcome not in ("ok", "fail", "unknown"):
            raise ValueError(f"Op outcome must be ok, fail or unknown, not {self.outcome!r}")
        if self.client not in CLIENTS:
            raise ValueError(f"Op client must be one of {', '.join(CLIENTS)}, not {self.client!r}")


def process_path(directory: str | Path) -> Path:
    """This process's history file in ``directory`` (one file per process, named by pid)."""
    return Path(directory) / f"history-{os.getpid()}.jsonl"


class HistoryWriter:
    """Appends one JSON line per Op to ``path``, flushed per line; safe for the greenlets (and threads)
    of one process. Use one file per process (see ``process_path``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()

    def write(self, op: Op) -> None:
        line = json.dumps(dataclasses.asdict(op), separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_history(paths_or_dir: str | Path | Iterable[str | Path]) -> list[Op]:
    """Every Op in a history file, a directory of ``*.jsonl`` files, or a list of files, by start time.

    A last line without its newline (a writer killed mid-line, or still writing) is skipped; any
    other malformed line raises ValueError.
    """
    if isinstance(paths_or_dir, (str, Path)):
        root = Path(paths_or_dir)
        paths = sorted(root.glob("*.jsonl")) if root.is_dir() else [root]
    else:
        paths = [Path(p) for p in paths_or_dir]
    ops = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        for number, line in enumerate(lines[:-1], 1):  # lines[-1] is "" or a torn last line
            if line.strip():
                try:
                    ops.append(Op(**json.loads(line)))
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{path}:{number}: not a history record: {exc}") from exc
    return sorted(ops, key=lambda op: (op.start, op.end))


def keys_of_run_query(run_id: str) -> str:
    """SQL reading back every key a run wrote (keys are ``<run id>-<pid>-<counter>``)."""
    if not run_id.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"run id {run_id!r} must be letters, digits, '-' and '_' only")
    return f"SELECT key FROM {TABLE} WHERE key LIKE '{run_id}-%'"


def classify(exc: BaseException, sent: bool) -> Literal["fail", "unknown"]:
    """The outcome of an operation that raised ``exc``; ``sent``: the statement had been sent.

    - Not sent (could not connect, connection refused, connect timeout, the server refused the
      session: 57P03 starting up, 53300 too many connections, ...): ``fail``, nothing was executed.
    - Sent, and the server answered the statement with an error (a ``psycopg.errors.DatabaseError``
      whose SQLSTATE is not connection class ``08``), e.g. ``ReadOnlySqlTransaction`` (25006) from a
      demoted primary: ``fail``; the statement was rolled back (autocommit: one statement, one
      transaction).
    - Sent, and the connection was lost or timed out (``OperationalError`` without SQLSTATE, class
      ``08``, a client-side timeout, the greenlet killed): ``unknown``; the server may have committed
      before the answer was lost.
    - Sent, and the session was terminated (57P01 admin_shutdown, 57P02 crash_shutdown, 57P05):
      ``unknown`` as well: PostgreSQL terminates a session waiting for synchronous replication with
      "the transaction has already committed locally", so this error does not prove a rollback.

    Counting an unknown as a failure invents lost writes; counting it as a success hides them.
    """
    if not sent:
        return "fail"
    import psycopg  # here, so that importing this module never imports psycopg before gevent patches

    if isinstance(exc, psycopg.errors.DatabaseError):
        state = exc.sqlstate or ""
        if state and not state.startswith("08") and state not in ("57P01", "57P02", "57P05"):
            return "fail"
    return "unknown"
