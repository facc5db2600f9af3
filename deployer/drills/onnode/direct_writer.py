"""On a node, inside the network: write to every node's PostgreSQL directly, bypassing HAProxy and
the load balancer, the way a client that knows a node's address would. One thread per address, one
INSERT at a time on a kept connection (reconnecting after any error), one JSON line per attempt in
``load.history.Op``'s fields. Config on stdin's first line: {"addresses", "port", "ca", "password", "prefix",
"period"}; TLS verified against the CA file "ca" and each node's address; when stdin closes, every thread finishes and reports its attempt, then the script exits.
Outcomes as ``load.history.classify``: not sent = fail; an SQL error = fail; lost on the way = unknown."""
import itertools
import json
import sys
import threading
import time

import psycopg

config = json.loads(sys.stdin.readline())
lock = threading.Lock()
stop = threading.Event()
INSERT = ("INSERT INTO drill_history (key) VALUES (%s) "
          "RETURNING host(inet_server_addr()), pg_walfile_name(pg_current_wal_lsn())")


def emit(record):
    with lock:
        print(json.dumps(record), flush=True)


def write_to(address):
    dsn = (f"host={address} port={config['port']} dbname=app user=app connect_timeout=1 "
           "keepalives=1 keepalives_idle=1 keepalives_interval=1 keepalives_count=2 tcp_user_timeout=2000 "
           f"sslmode=verify-full sslrootcert={config['ca']}")
    conn = None
    for n in itertools.count(1):
        if stop.is_set():
            return
        key, start, sent, outcome, error, row = f"{config['prefix']}-{address}-{n}", time.time(), False, "ok", None, None
        try:
            if conn is None:
                conn = psycopg.connect(dsn, password=config["password"], autocommit=True)
            sent = True
            row = conn.execute(INSERT, (key,)).fetchone()
        except psycopg.Error as exc:
            state = getattr(exc, "sqlstate", None) or ""
            failed = not sent or (isinstance(exc, psycopg.errors.DatabaseError) and state
                                  and not state.startswith("08") and state not in ("57P01", "57P02", "57P05"))
            outcome, error = ("fail" if failed else "unknown"), f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            if conn is not None:
                conn.close()
            conn = None
        emit({"kind": "write", "key": key, "start": start, "end": time.time(), "outcome": outcome,
              "server": row[0] if row else None, "error": error, "timeline": int(row[1][:8], 16) if row else None})
        stop.wait(config["period"])


threads = [threading.Thread(target=write_to, args=(address,), daemon=True) for address in config["addresses"]]
for thread in threads:
    thread.start()
sys.stdin.read()  # until the drill closes stdin
stop.set()
for thread in threads:
    thread.join(timeout=4)
