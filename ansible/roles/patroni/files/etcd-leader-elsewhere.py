#!/usr/bin/python3
"""Keep etcd's raft leader off the node where Patroni leads (a daemon on every node).

Why: when Patroni's leader crashes or is cut off while its etcd member leads etcd, the member
elected next renews every lease on taking over (etcd's lessor ``Promote``), the dead leader's too,
so its key outlives ``ttl`` by up to a whole ``ttl`` plus an etcd election. With etcd's leader
elsewhere, the key expires ``ttl`` after its last renewal.

Every ``--interval`` seconds: if this node's Patroni answers ``--patroni`` (its ``/primary``) with
200 and the etcd member at ``--local`` is etcd's leader, hand etcd's leadership
(``etcdctl move-leader``) to the first of ``--peer`` that answers. Only the node that leads both
ever acts; every failure is logged and retried at the next turn.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request


def patroni_leads(url: str) -> bool:
    """Whether Patroni's REST API at ``url`` (``/primary``) answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def etcdctl(endpoint: str, *args: str) -> str:
    """``etcdctl ARGS`` (v3) against ``endpoint``; its output. Raises on failure."""
    argv = ["etcdctl", f"--endpoints={endpoint}", "--dial-timeout=1s", "--command-timeout=2s", *args]
    return subprocess.run(argv, env={**os.environ, "ETCDCTL_API": "3"}, capture_output=True, text=True,
                          timeout=5, check=True).stdout


def status(endpoint: str) -> dict:
    """The member's own status: ``{"header": {"member_id", ...}, "leader", ...}``."""
    return json.loads(etcdctl(endpoint, "endpoint", "status", "--write-out=json"))[0]["Status"]


def once(patroni_url: str, local: str, peers: list[str]) -> str | None:
    """One turn; the peer etcd's leadership was handed to, if it was."""
    if not patroni_leads(patroni_url):
        return None
    mine = status(local)
    if mine["leader"] != mine["header"]["member_id"]:
        return None
    for peer in peers:
        try:
            target = status(peer)["header"]["member_id"]
        except (subprocess.SubprocessError, ValueError, LookupError):
            continue
        etcdctl(local, "move-leader", format(target, "x"))
        print(f"this node leads Patroni and led etcd: moved etcd's leadership to {peer} ({target:x})", flush=True)
        return peer
    print("this node leads Patroni and etcd, and no other etcd member answers", file=sys.stderr, flush=True)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patroni", required=True, help="this node's Patroni /primary URL")
    parser.add_argument("--local", required=True, help="this node's etcd client URL")
    parser.add_argument("--peer", action="append", default=[], help="another member's etcd client URL")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between two turns")
    args = parser.parse_args()
    while True:
        try:
            once(args.patroni, args.local, args.peer)
        except (subprocess.SubprocessError, ValueError, LookupError) as exc:
            detail = getattr(exc, "stderr", None) or exc
            print(f"turn failed, retried in {args.interval} s: {str(detail).strip()}", file=sys.stderr, flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
