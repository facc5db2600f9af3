"""Keep-alive clients of one etcd member's v3 gateway, as Patroni is one: what they are answered
while that member stops.

Patroni's etcd3 client keeps HTTPS connections open to one member and posts JSON to its gRPC
gateway. A member that stops may answer a request in flight with an *error* (etcd 3.4 with TLS
stops its gRPC server abruptly, and its gateway then answers gRPC code 2, Unknown, "transport:
missing content-type field"); Patroni does not retry that code and a leader demotes itself. A
member that drains its clients first (the etcd role's ``etcd_drain_table``) resets or refuses
them instead, which Patroni retries on another member.

This file is a script as well: ``python - ADDRESS PORT SECONDS CLIENTS CA CERT KEY`` runs the
clients for SECONDS with that TLS material and prints their tally as JSON. It uses the standard library
and urllib3 only (the Patroni virtualenv on a node has both), so ``suites`` pipe this source to a
node's Patroni interpreter over SSH.
"""

from __future__ import annotations

import json
import sys
import threading
import time

#: gRPC's codes (google.golang.org/grpc/codes) in a gateway's JSON error body: Unknown, which
#: Patroni's etcd3 client raises as is, and Unavailable, which it takes for a timeout (it switches
#: to another member and retries).
GRPC_UNKNOWN, GRPC_UNAVAILABLE = 2, 14

#: The tally's keys: an answer; turned away (no answer: reset, refused, timed out; or gRPC
#: Unavailable), which Patroni retries on another member; gRPC Unknown; another error answer.
OUTCOMES = ("ok", "turned_away", "unknown", "error")


def _by_code(data: object) -> str:
    """An error body's outcome by its gRPC code (``code`` in a unary answer, ``error.grpc_code`` in
    a stream's last message): 2 ``unknown``, 14 (Unavailable) ``turned_away``, else ``error``."""
    error = data.get("error") if isinstance(data, dict) else None
    code = error.get("grpc_code") if isinstance(error, dict) else data.get("code") if isinstance(data, dict) else None
    return {GRPC_UNKNOWN: "unknown", GRPC_UNAVAILABLE: "turned_away"}.get(code, "error")


def outcome(status: int, body: bytes) -> str:
    """Classify one answer to a request: ``ok`` (2xx), else by its error's gRPC code (``_by_code``;
    a body that is no JSON is an ``error``)."""
    if 200 <= status < 300:
        return "ok"
    try:
        return _by_code(json.loads(body))
    except ValueError:
        return "error"


def stream_end(last: bytes) -> str:
    """Classify how a watch stream ended, by its last message: an error message by its gRPC code
    (etcd 3.4 over TLS, stopping without a drain, ends every watch with code 13, "server closed
    the stream without sending trailers"), else ``turned_away`` (the stream just ended)."""
    try:
        data = json.loads(last.strip().splitlines()[-1]) if last.strip() else {}
    except ValueError:
        return "error"
    return _by_code(data) if isinstance(data, dict) and "error" in data else "turned_away"


def hammer(address: str, port: int, seconds: float, clients: int, tls: dict[str, str]) -> dict[str, int]:
    """For ``seconds``, ``clients`` threads, each with one kept-alive HTTPS connection (no retries,
    2 s timeout), post range reads to the member, and two more each keep a watch open on it, as
    Patroni does (a new one whenever one ends); the tally of outcomes (``OUTCOMES``): one per
    request, one per watch that ended. Every failure to connect or read counts as turned away."""
    import urllib3  # on the node, from Patroni's virtualenv

    tally = dict.fromkeys(OUTCOMES, 0)
    lock = threading.Lock()
    key = "cGdoYS1kY3MtY2xpZW50cw=="  # base64 of "pgha-dcs-clients"
    end = time.monotonic() + seconds

    def count(seen: str) -> None:
        with lock:
            tally[seen] += 1

    def reader() -> None:
        pool = urllib3.HTTPSConnectionPool(address, port, maxsize=1, retries=False, timeout=2.0, **tls)
        while time.monotonic() < end:
            try:
                answer = pool.request("POST", "/v3/kv/range", body=json.dumps({"key": key}))
                count(outcome(answer.status, answer.data))
            except urllib3.exceptions.HTTPError:
                count("turned_away")
                time.sleep(0.02)

    def watcher() -> None:
        timeout = urllib3.Timeout(connect=2.0, read=seconds)
        pool = urllib3.HTTPSConnectionPool(address, port, maxsize=1, retries=False, timeout=timeout, **tls)
        while time.monotonic() < end:
            try:
                stream = pool.urlopen("POST", "/v3/watch", body=json.dumps({"create_request": {"key": key}}),
                                      preload_content=False)
                last = b""
                for chunk in stream.stream(65536):
                    last = chunk
                count(stream_end(last))
            except urllib3.exceptions.HTTPError:
                count("turned_away")
                time.sleep(0.2)

    threads = [threading.Thread(target=reader) for _ in range(clients)] + [threading.Thread(target=watcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


if __name__ == "__main__":
    host, port_arg, seconds_arg, clients_arg, ca, cert, key = sys.argv[1:8]
    tls_files = {"ca_certs": ca, "cert_file": cert, "key_file": key}
    print(json.dumps(hammer(host, int(port_arg), float(seconds_arg), int(clients_arg), tls_files)))
