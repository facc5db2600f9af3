"""Active probes run at a vantage point (``python -m deployer.netprobe ...`` under the target's
vantage prefix, e.g. inside the ``client`` namespace), printing one JSON line.

- ``tcp HOST PORT``: does a TCP connection open? (reachable, seconds, detail)
- ``sql DSN_ENV QUERY``: run one query with the DSN from environment variable DSN_ENV (so the
  password never appears in a command line) and print the rows.
- ``http METHOD URL BODY [AUTH_ENV]``: one HTTP request (``user:password`` from environment
  variable AUTH_ENV as basic auth, if given): the status, or why no answer came.
- ``send HOST PORT TEXT``: write TEXT to a TCP connection and read what comes back (up to 1 KiB,
  2 s): does a line protocol such as HAProxy's runtime API answer there?
- ``batch``: a JSON list of the above on stdin, run at once; prints the list of answers.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor


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


def http_request(method: str, url: str, body: str, auth_env: str | None = None, timeout: float = 3.0) -> dict:
    """One request; ``status`` and the start of the body, or ``reachable`` False with ``detail``
    (as ``tcp`` says it) when no connection opened, or ``detail`` alone when it broke later (a TLS
    handshake the server refused included: ``TLS refused: ...``). An ``https`` URL is sent over TLS
    without verifying the server and without a client certificate: where anyone stands."""
    parts = urllib.parse.urlsplit(url)
    headers = {"Content-Type": "application/json"}
    if auth_env:
        headers["Authorization"] = "Basic " + base64.b64encode(os.environ[auth_env].encode()).decode()
    conn = (http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                        context=ssl._create_unverified_context())  # noqa: S323 - anyone's view
            if parts.scheme == "https" else http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout))
    try:
        conn.connect()
    except ssl.SSLError as exc:
        return {"reachable": True, "detail": f"TLS refused: {exc}"}
    except OSError as exc:
        return {"reachable": False, "detail": "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))}
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body.encode(), headers=headers)
        resp = conn.getresponse()
        return {"reachable": True, "status": resp.status, "body": resp.read(300).decode(errors="replace")}
    except (OSError, http.client.HTTPException) as exc:
        return {"reachable": True, "detail": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()


def send(host: str, port: int, text: str, timeout: float = 2.0) -> dict:
    """Write ``text`` (a trailing newline added) and read until the peer closes, 1 KiB or ``timeout``."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return {"reachable": False, "detail": "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))}
    reply = b""
    with sock:
        try:
            sock.sendall(text.encode() + b"\n")
            while len(reply) < 1024 and (chunk := sock.recv(1024)):
                reply += chunk
        except OSError:
            pass  # a reset or the deadline: what came until then is the answer
    return {"reachable": True, "reply": reply.decode(errors="replace")[:1024]}


def probe(argv: list[str]) -> dict:
    """One probe, ``[kind, *args]`` as on the command line; its answer."""
    kind, *args = argv
    if kind == "tcp":
        return tcp(args[0], int(args[1]), float(args[2]) if len(args) > 2 else 3.0)
    if kind == "sql":
        try:
            return sql(args[0], args[1])
        except Exception as exc:  # noqa: BLE001 - reported to the caller as data
            return {"error": f"{type(exc).__name__}: {exc}"}
    if kind == "http":
        return http_request(*args[:3], *args[3:4])
    if kind == "send":
        return send(args[0], int(args[1]), args[2])
    raise SystemExit(f"unknown probe {kind!r}")


def main(argv: list[str]) -> int:
    """``batch`` reads a JSON list of probes (each ``[kind, *args]``) on stdin, runs them at once and
    prints the list of answers; any other kind runs that one probe."""
    if argv == ["batch"]:
        with ThreadPoolExecutor(32) as pool:
            result: dict | list = list(pool.map(probe, json.load(sys.stdin)))
    else:
        result = probe(argv)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
