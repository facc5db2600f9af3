"""The workload (Jepsen's client): Locust users writing uniquely keyed rows through the load
balancer and recording every operation in the history (``load/history.py``).

Run headless as its own process (Locust patches everything with gevent on import), e.g.::

    PGHA_WRITE_DSN=... PGHA_READ_DSN=... PGHA_HISTORY_DIR=reports/run/history PGHA_RUN_ID=run \\
        python -m locust -f load/locustfile.py --headless -u 4 -r 4 -t 60s --only-summary

Environment: ``PGHA_WRITE_DSN`` (port 5000, the primary) and ``PGHA_READ_DSN`` (5001, replicas):
libpq DSNs holding a password, never logged; they carry ``tcp_user_timeout`` and keepalives.
``PGHA_HISTORY_DIR``: where each process writes ``history-<pid>.jsonl``. ``PGHA_RUN_ID``: the key
prefix (keys are ``<run id>-<pid>-<counter>``). ``PGHA_WRITES_PER_S``: target write rate of the
whole run (default 20), shared by the ``PGHA_WRITERS`` writer users of every process (default 4);
the two sequential clients (``fixed_count = 1`` each, on top of the writers) are not paced by it.
``PGHA_OP_TIMEOUT``: seconds before an operation is abandoned on the client (default 10; it then
counts as unknown if its statement was sent), except by the short-timeout sequential client
(``SHORT_OP_TIMEOUT``).

Table: ``load.history.TABLE`` (the drill creates it; each process also tries ``history.SCHEMA``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import gevent
import gevent.lock
from locust import User, constant_throughput, task

import psycopg  # noqa: E402 - after gevent's patching (locust), so psycopg waits cooperatively

from load.history import SCHEMA, SEQUENTIAL_CLIENTS, TABLE, HistoryWriter, Op, classify, process_path

_MISSING = [name for name in ("PGHA_WRITE_DSN", "PGHA_READ_DSN", "PGHA_HISTORY_DIR") if not os.environ.get(name)]
if _MISSING:
    raise SystemExit(f"load/locustfile.py needs the environment variable(s) {', '.join(_MISSING)}")

WRITE_DSN = os.environ["PGHA_WRITE_DSN"]
READ_DSN = os.environ["PGHA_READ_DSN"]
HISTORY_DIR = Path(os.environ["PGHA_HISTORY_DIR"])
RUN_ID = os.environ.get("PGHA_RUN_ID", "run")
WRITES_PER_S = float(os.environ.get("PGHA_WRITES_PER_S", "20"))
WRITERS = int(os.environ.get("PGHA_WRITERS", "4"))
#: The sequential client's attempts per second (one at a time, so fewer when an attempt is slow).
SEQUENTIAL_PER_S = 10
OP_TIMEOUT = float(os.environ.get("PGHA_OP_TIMEOUT", "10"))
CONNECT_TIMEOUT = 2
#: The short-timeout sequential client's operation timeout (seconds): an application's short deadline.
SHORT_OP_TIMEOUT = 2
WRITE_WEIGHT, READ_WEIGHT = 4, 1

INSERT = (f"INSERT INTO {TABLE} (key) VALUES (%s) "
          "RETURNING host(inet_server_addr()), pg_walfile_name(pg_current_wal_lsn())")
READ = f"SELECT host(inet_server_addr()), EXISTS (SELECT 1 FROM {TABLE} WHERE key = %s)"

_counter = itertools.count(1)
_acknowledged: deque[str] = deque(maxlen=200)  # recent acknowledged keys, for reads
_writer: HistoryWriter | None = None
_schema_lock = gevent.lock.Semaphore()
_schema_tried = False


def history() -> HistoryWriter:
    """This process's history writer (one file per process)."""
    global _writer
    if _writer is None or _writer.path != process_path(HISTORY_DIR):
        _writer = HistoryWriter(process_path(HISTORY_DIR))
    return _writer


class PostgresUser(User):
    """Abstract: a user whose client runs one SQL operation per call, on a fresh connection (a
    failover is seen by the next operation, no stale pooled connection), times it with
    ``perf_counter``, reports it to Locust under request type ``sql`` (failures through
    ``exception=``) and records it in the history with its outcome, abandoning it after
    ``op_timeout`` seconds. A subclass may keep its connection instead (``connection``/``drop``)."""

    abstract = True
    #: Seconds before ``run_op`` abandons an operation (connect included); then ``unknown`` if it was sent.
    op_timeout: float = OP_TIMEOUT

    @contextlib.contextmanager
    def connection(self, dsn: str) -> Iterator[psycopg.Connection]:
        """The connection one operation runs on: a fresh one, closed afterwards."""
        with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            yield conn

    def drop(self) -> None:
        """Forget a kept connection after an error (nothing is kept here)."""

    def run_op(self, kind: str, key: str, dsn: str, query: str, params: tuple) -> tuple | None:
        """Run ``query`` with autocommit and return its row; never raises for a database failure."""
        start, t0 = time.time(), time.perf_counter()
        sent, row, exc = False, None, None
        try:
            with gevent.Timeout(self.op_timeout, TimeoutError(f"no answer within {self.op_timeout:g} s")):
                with self.connection(dsn) as conn:
                    sent = True
                    row = conn.execute(query, params).fetchone()
        except BaseException as error:  # noqa: BLE001 - every outcome is recorded; non-Exceptions re-raised
            exc = error
            self.drop()
        outcome = "ok" if exc is None else classify(exc, sent)
        self.record(kind, key, start, t0, outcome, row, exc)
        if exc is not None and not isinstance(exc, Exception):
            raise exc  # GreenletExit (the user is being stopped): recorded above, now stop
        return row

    client = "locust"

    def record(self, kind, key, start, t0, outcome, row, exc) -> None:
        elapsed_ms = (time.perf_counter() - t0) * 1000
        server = row[0] if row else None
        timeline = int(row[1][:8], 16) if row and kind == "write" else None
        error = None if exc is None else f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        if kind == "read" and row and not row[1]:
            error = "stale"
        history().write(Op(kind, key, start, time.time(), outcome, server, error, timeline, client=self.client))
        if exc is not None and not isinstance(exc, Exception):
            return  # interrupted by the end of the run: in the history, not a failure of the system
        self.environment.events.request.fire(
            request_type="sql", name=kind if exc is None else f"{kind} ({outcome})", response_time=elapsed_ms,
            response_length=0, exception=exc, context={})


class Writer(PostgresUser):
    """Writes uniquely keyed rows through the primary frontend and, less often, reads back a recently
    acknowledged key through the replica frontend. The whole run targets ``PGHA_WRITES_PER_S`` writes."""

    def on_start(self) -> None:
        global _schema_tried
        tasks_per_s = WRITES_PER_S / max(1, WRITERS) * (WRITE_WEIGHT + READ_WEIGHT) / WRITE_WEIGHT
        self._pace = constant_throughput(tasks_per_s)
        with _schema_lock:  # every user of this process waits for the one attempt
            if not _schema_tried:
                _schema_tried = True
                try:
                    with gevent.Timeout(OP_TIMEOUT, False), \
                            psycopg.connect(WRITE_DSN, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
                        conn.execute(SCHEMA)
                except psycopg.Error:
                    pass  # the drill creates the table; failures show up as failed writes

    def wait_time(self) -> float:
        return self._pace(self)

    @task(WRITE_WEIGHT)
    def write(self) -> None:
        key = f"{RUN_ID}-{os.getpid()}-{next(_counter)}"
        if self.run_op("write", key, WRITE_DSN, INSERT, (key,)) is not None:
            _acknowledged.append(key)

    @task(READ_WEIGHT)
    def read(self) -> None:
        if _acknowledged:
            key = random.choice(_acknowledged)
            self.run_op("read", key, READ_DSN, READ, (key,))


class SequentialWriter(PostgresUser):
    """One client as an application runs it: one write at a time through the primary frontend on a
    kept connection with the application's libpq settings (the DSN's connect_timeout, keepalives,
    tcp_user_timeout), reconnecting after any error, each operation abandoned after ``op_timeout``.
    Its gap is what one user of the application sees; the checkers split it into time spent
    connecting, failing and waiting."""

    fixed_count = 1
    client = SEQUENTIAL_CLIENTS[0]
    wait_time = constant_throughput(SEQUENTIAL_PER_S)
    #: libpq parameters overriding the DSN's when connecting (none: the application's settings as given).
    connect_options: dict[str, object] = {}
    _conn: psycopg.Connection | None = None

    @contextlib.contextmanager
    def connection(self, dsn: str) -> Iterator[psycopg.Connection]:
        if self._conn is None:
            self._conn = psycopg.connect(dsn, autocommit=True, **self.connect_options)
        yield self._conn

    def drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    on_stop = drop

    @task
    def write(self) -> None:
        key = f"{RUN_ID}-{os.getpid()}-seq-{next(_counter)}"
        self.run_op("write", key, WRITE_DSN, INSERT, (key,))


class ShortTimeoutSequentialWriter(SequentialWriter):
    """The sequential client as an application with short deadlines runs it, beside the one above:
    ``connect_timeout`` ``CONNECT_TIMEOUT`` over the DSN's, each operation abandoned after
    ``SHORT_OP_TIMEOUT`` (then ``unknown`` if sent), the connection dropped on any error and made
    again. A kept connection whose flow the load balancer still sends to a probed-down member, or a
    connect to a dead one, then costs it about 2 s (the next connection goes to a member the load
    balancer still probes up) instead of ``OP_TIMEOUT`` or the DSN's connect_timeout."""

    client = SEQUENTIAL_CLIENTS[1]
    op_timeout = SHORT_OP_TIMEOUT
    connect_options = {"connect_timeout": CONNECT_TIMEOUT}
