"""The workload's two ends without a database: what ``load/runner.py`` counts and asks Locust for,
and what the users of ``load/locustfile.py`` do with a connection that answers late. Locust patches
everything with gevent on import, so the locustfile only runs in a child process here (a fake
``psycopg.connect``; nothing listens, nothing is deployed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from deployer.paths import LOCUSTFILE, REPO
from load.history import SEQUENTIAL_CLIENTS, HistoryWriter, Op, read_history
from load.runner import Workload, locust_users


def _w(key, end, client="locust", outcome="ok"):
    return Op("write", key, end - 0.1, end, outcome, "10.0.1.4" if outcome == "ok" else None, client=client)


def test_the_workload_counts_the_paced_writers_acknowledgements_only(tmp_path):
    now = time.time()
    paced = [_w("k1", now - 4), _w("k2", now - 3), _w("k3", now - 2, outcome="fail"), Op("read", "k1", now, now, "ok")]
    others = [_w(f"{c}-1", now - 9, client=c) for c in (*SEQUENTIAL_CLIENTS, "direct")]
    with HistoryWriter(tmp_path / "history-1.jsonl") as writer:
        for op in paced + others:
            writer.write(op)
    workload = Workload(None, tmp_path, tmp_path / "locust.log")
    assert len(workload.history()) == 7
    # counting the sequential clients or the direct writers would give 5 and 9 s
    assert workload.ok_writes() == 2 and 4 <= workload.steady_s() < 5


def test_locust_is_asked_for_the_writers_plus_one_user_per_sequential_client():
    assert locust_users(4) == 4 + len(SEQUENTIAL_CLIENTS) == 6


#: In a child process: the user classes Locust picks from the locustfile, how its real dispatcher
#: shares ``locust_users(4)`` among them over two workers, and, with ``psycopg.connect`` faked (each
#: connection answering after the next delay of ``DELAYS``), one write of each sequential client.
CHILD = r"""
import json, sys, time
import gevent, psycopg
from locust.dispatch import UsersDispatcher
from locust.env import Environment
from locust.runners import WorkerNode
from locust.util.load_locustfile import load_locustfile
from load.history import read_history
from load.runner import locust_users

classes, _ = load_locustfile(sys.argv[1])
dispatcher = UsersDispatcher([WorkerNode("w1"), WorkerNode("w2")], list(classes.values()))
dispatcher._wait_between_dispatch = 0
dispatcher.new_dispatch(locust_users(4), locust_users(4))
spawned = {}
for on_workers in dispatcher:
    spawned = {name: sum(w.get(name, 0) for w in on_workers.values()) for name in classes}

DELAYS = [3.0, 0.0, 2.5]  # short-timeout: too late, then at once; sequential: later than 2 s, within 10 s
calls, conns = [], []

class Conn:
    def __init__(self, delay):
        self.delay, self.closed = delay, False
    def execute(self, query, params):
        gevent.sleep(self.delay)
        return self
    def fetchone(self):
        return ("10.0.1.4", "000000020000000000000001")
    def close(self):
        self.closed = True

def connect(dsn, **options):
    calls.append(options)
    conns.append(Conn(DELAYS[len(conns)]))
    return conns[-1]

psycopg.connect = connect
took = []
for name, writes in (("ShortTimeoutSequentialWriter", 2), ("SequentialWriter", 1)):
    user = classes[name](Environment(user_classes=[classes[name]]))
    for _ in range(writes):
        t0 = time.perf_counter()
        user.write()
        took.append(round(time.perf_counter() - t0, 1))
print(json.dumps({
    "classes": {name: {"fixed_count": c.fixed_count, "client": c.client, "op_timeout": c.op_timeout}
                for name, c in classes.items()},
    "spawned": spawned, "connects": calls, "closed": [c.closed for c in conns], "took": took}))
"""


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    history = tmp_path_factory.mktemp("history")
    env = {**os.environ, "PGHA_WRITE_DSN": "host=127.0.0.1 port=1 connect_timeout=5", "PGHA_READ_DSN": "host=127.0.0.1",
           "PGHA_HISTORY_DIR": str(history), "PGHA_RUN_ID": "t", "PGHA_WRITERS": "4"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(LOCUSTFILE)], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), read_history(history)


def test_locust_runs_the_writers_and_one_user_per_sequential_client(child):
    seen, _ = child
    classes = seen["classes"]
    assert set(classes) == {"Writer", "SequentialWriter", "ShortTimeoutSequentialWriter"}
    assert [c["client"] for c in classes.values() if c["fixed_count"]] == list(SEQUENTIAL_CLIENTS)
    assert all(c["fixed_count"] == 1 for c in classes.values() if c["client"] in SEQUENTIAL_CLIENTS)
    # one user fewer in -u would take it from the writers, not from the fixed-count clients
    assert seen["spawned"] == {"Writer": 4, "SequentialWriter": 1, "ShortTimeoutSequentialWriter": 1}


def test_the_short_timeout_client_gives_up_after_2_s_and_reconnects_where_the_other_waits(child):
    seen, history = child
    assert seen["classes"]["ShortTimeoutSequentialWriter"]["op_timeout"] == 2
    assert seen["classes"]["SequentialWriter"]["op_timeout"] == 10
    # connect_timeout=2 over the DSN's 5 for the short-timeout client; the DSN's own for the other
    assert seen["connects"] == [{"autocommit": True, "connect_timeout": 2}] * 2 + [{"autocommit": True}]
    assert seen["closed"] == [True, False, False], "the abandoned connection is dropped, the next one kept"
    assert seen["took"] == [2.0, 0.0, 2.5]
    by_client = {c: [(op.outcome, op.error, op.timeline) for op in history if op.client == c] for c in SEQUENTIAL_CLIENTS}
    assert by_client == {"sequential-short-timeout": [("unknown", "TimeoutError: no answer within 2 s", None),
                                                      ("ok", None, 2)],
                         "sequential": [("ok", None, 2)]}
