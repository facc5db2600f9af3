"""Active probes run at a vantage point (``python -m deployer.netprobe ...`` under the target's
vantage prefix, e.g. inside the ``client`` namespace), printing one JSON line.

- ``tcp HOST PORT``: does a TCP connection open? (reachable, seconds, detail)
- ``sql DSN_ENV QUERY``: run one query with the DSN from environment variable DSN_ENV (so the
  password never appears in a command line) and print the rows.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time


def tcp(host: str, port: int, timeout: float) -> dict:
    """One connection attempt; ``detail`` says why it failed (timeout = filtered, refused = closed)."""
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return {"reachable": True, "seconds": time.monotonic() - start, "detail": "connected"}
    except OSError as exc:
        detail = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return {"reachable": False, "seconds": time.monotonic() - start, "detail": detail}


def sql(dsn_env: str, query: str) -> dict:
    """Run ``query`` (autocommit) and return its rows as lists of strings."""
    import psycopg

    with psycopg.connect(os.environ[dsn_env], autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(query)
        rows = cur.fetchall() if cur.description else []
    return {"rows": [[None if v is None else str(v) for v in row] for row in rows]}


def main(argv: list[str]) -> int:
    kind, *args = argv
    if kind == "tcp":
        result = tcp(args[0], int(args[1]), float(args[2]) if len(args) > 2 else 3.0)
    elif kind == "sql":
        try:
            result = sql(args[0], args[1])
        except Exception as exc:  # noqa: BLE001 - reported to the caller as data
            result = {"error": f"{type(exc).__name__}: {exc}"}
    else:
        raise SystemExit(f"unknown probe {kind!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
