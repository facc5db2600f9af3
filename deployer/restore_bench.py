"""``make bench-restore`` (``python -m deployer.restore_bench --stack NAME``): how long pgBackRest
takes to restore databases of a few sizes, beside a plain copy of the same data directory (the
limit: what moving those bytes costs on this disk); writes ``reports/restore.json``::

    {"machine": {"cores", "cpu", "memory_gb", "disk_free_gb", "nodes", "postgres", "pgbackrest": {setting: value}},
     "units": sentence, "scales": [{"scale", "db_bytes", "copy_bytes", "init_s", "backup_s", "copy_s", "restore_s",
     "restore_total_s", "restore_steps_s", "restore_mb_per_s", "copy_mb_per_s", "ratio", "rows"}
     | {"scale", "error", ...}],
     "skipped": [{"scale", "estimate_bytes", "free_bytes", "reason"}], "failed": [scale, ...]}

It destroys the stack's data: for each pgbench scale factor, ascending, it re-creates the database
``bench`` on the leader with ``pgbench -i``, sums ``pg_database_size`` over the cluster, takes a full
backup (``backups.take``), copies the leader's data directory to ``COPY`` and flushes it (timed on the
node, then removed), restores the whole cluster in place to the end of the archive
(``restore.restore``: ``restore_s`` is its first node's bootstrap, pgBackRest's restore and WAL
replay; ``restore_total_s`` every step to a healthy pool, its own full backup of the restored
timeline and the replicas created from it included), and counts ``pgbench_accounts`` on the
restored leader: a restore that lost rows is a failure, never a figure. Scales whose estimate
(``estimate_bytes``) does not fit the free disk under ``STATE_ROOT`` (where the local target keeps
the VMs and the repository) are skipped, and said so; the first failure stops the bench, since the
cluster's state is then unknown. Both the copy and the restore read data the page cache may hold and
end with their writes on disk (``sync``; pgBackRest syncs what it restores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from deployer import backups, inventory, restore
from deployer.paths import REPORTS
from deployer.stack import Stack
from deployer.state import STATE_ROOT

#: Bytes per megabyte in the report.
MB = 10**6
#: What ``pgbench -i`` writes per scale unit: 100,000 rows of ``pgbench_accounts`` and their index.
BYTES_PER_SCALE = 15 * MB
#: Copies of the data a scale needs besides every node's: the repository's (the bench's full backup,
#: the WAL ``pgbench -i`` wrote, archived, and the restore's own full backup of the restored timeline;
#: uncompressed at worst) and the plain copy.
REPOSITORY_COPIES, COPY_COPIES = 3, 1
#: Room kept free beyond the estimate: every node's ``pg_wal`` up to ``max_wal_size`` (1 GB), the copy's.
MARGIN_BYTES = 4 * 10**9
#: Where the plain copy goes on the leader (removed after each scale).
COPY = "/var/tmp/pgha-copy"
ROWS_PER_SCALE = 100_000
UNITS = ("MB = 10^6 bytes; seconds; restore_s: the first node's bootstrap (pgBackRest's restore and WAL replay); "
         "restore_total_s: Patroni stopped to every node healthy in the pool, the restore's full backup of the new "
         "timeline and the replicas' creation included (restore_steps_s: each step); ratio: restore_s / copy_s")


def estimate_bytes(scale: int, nodes: int) -> int:
    """Disk a scale takes at its peak: the data on every node, in the repository and in the copy,
    and the margin."""
    return BYTES_PER_SCALE * scale * (nodes + REPOSITORY_COPIES + COPY_COPIES) + MARGIN_BYTES


def plan(scales: list[int], free_bytes: int, nodes: int) -> tuple[list[int], list[dict]]:
    """The scales to run, ascending, and those skipped with the reason: each must fit in what is free
    less what the repository keeps of the earlier ones (counted whatever the retention expires)."""
    chosen, skipped, kept = [], [], 0
    for scale in sorted(set(scales)):
        need, free = estimate_bytes(scale, nodes), free_bytes - kept
        if need > free:
            skipped.append({"scale": scale, "estimate_bytes": need, "free_bytes": free, "reason": (
                f"scale {scale} needs about {need / 1e9:.1f} GB ({BYTES_PER_SCALE // MB} MB x {scale} x ({nodes} nodes "
                f"+ {REPOSITORY_COPIES} in the repository + {COPY_COPIES} copy) + {MARGIN_BYTES / 1e9:.0f} GB for "
                f"pg_wal); {free / 1e9:.1f} GB is free beside the earlier scales' backups")})
        else:
            chosen.append(scale)
            kept += BYTES_PER_SCALE * scale * REPOSITORY_COPIES
    return chosen, skipped


def bootstrap_seconds(steps: dict[str, float]) -> float:
    """The seconds of ``restore.restore``'s bootstrap step (pgBackRest's restore and the replay);
    ValueError naming the steps it returned when none is."""
    found = [s for step, s in steps.items() if step.startswith("bootstrapping ")]
    if len(found) != 1:
        raise ValueError(f"expected one bootstrap step among the restore's, saw {sorted(steps)}")
    return found[0]


def entry(scale: int, m: dict) -> dict:
    """One scale's line of the report from its measurements ``m`` (``db_bytes``, ``copy_bytes``,
    ``init_s``, ``backup_s``, ``copy_s``, ``steps``: what ``restore.restore`` returned, ``rows``: of
    ``pgbench_accounts`` after the restore): the figures, or an error when rows are missing."""
    expected = ROWS_PER_SCALE * scale
    if m["rows"] != expected:
        return {"scale": scale, "rows": m["rows"], "expected_rows": expected, "error": (
            f"the restored cluster has {m['rows']} rows in pgbench_accounts, {expected} were written "
            f"and backed up: a restore that lost data gives no figure")}
    restore_s, copy_s = bootstrap_seconds(m["steps"]), m["copy_s"]
    return {"scale": scale, "db_bytes": m["db_bytes"], "copy_bytes": m["copy_bytes"], "init_s": m["init_s"],
            "backup_s": m["backup_s"], "copy_s": copy_s, "restore_s": restore_s, "restore_total_s": m["steps"]["total"],
            "restore_steps_s": {k: v for k, v in m["steps"].items() if k != "total"},
            "restore_mb_per_s": round(m["db_bytes"] / MB / restore_s, 1),
            "copy_mb_per_s": round(m["copy_bytes"] / MB / copy_s, 1),
            "ratio": round(restore_s / copy_s, 1), "rows": m["rows"]}


def run(scales: list[int], measure: Callable[[int], dict]) -> tuple[list[dict], list[dict]]:
    """Each scale's ``entry`` from ``measure(scale)``, in order; the first failure (an exception, or rows
    missing) is recorded and stops the run: the scales after it come back as skipped."""
    entries = []
    for i, scale in enumerate(scales):
        try:
            entries.append(entry(scale, measure(scale)))
        except Exception as exc:  # noqa: BLE001 - any failure is recorded, and the run stops
            entries.append({"scale": scale, "error": f"{type(exc).__name__}: {exc}"})
        if "error" in entries[-1]:
            return entries, [{"scale": s, "reason": f"not run: scale {scale} failed first"} for s in scales[i + 1:]]
    return entries, []


def report(machine: dict, entries: list[dict], skipped: list[dict]) -> dict:
    """``reports/restore.json`` (see the module docstring)."""
    return {"machine": machine, "units": UNITS, "scales": entries, "skipped": skipped,
            "failed": [e["scale"] for e in entries if "error" in e]}


def settings(text: str) -> dict[str, str]:
    """``name=value`` lines of pgBackRest's configuration as a dict."""
    return dict(line.strip().split("=", 1) for line in text.splitlines() if "=" in line)


# ----- measurements on a live stack -----

def _seconds(work: Callable[[], object]) -> float:
    began = time.monotonic()
    work()
    return round(time.monotonic() - began, 2)


def machine(stack: Stack, free_bytes: int) -> dict:
    """This host and the settings that bound the restore, as the leader's pgBackRest reads them."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    mem_kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    grep = ["sudo", "grep", "-E", "^(process-max|compress-type)=", backups.CONFIG]  # not the key beside them
    conf = stack.ssh(stack.leader().name, grep).stdout
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_kib * 1024 / 1e9, 1),
            "disk_free_gb": round(free_bytes / 1e9, 1), "nodes": len(stack.spec.nodes),
            "postgres": stack.spec.postgres.version, "pgbackrest": settings(conf)}


def copy_seconds(stack: Stack, node: str) -> tuple[int, float]:
    """Bytes of ``node``'s data directory and the seconds ``cp -a`` of it to ``COPY`` and ``sync`` took,
    timed on the node after a checkpoint and a sync; the copy removed."""
    stack.psql(node, "CHECKPOINT")
    stack.ssh(node, ["sudo", "sh", "-c", 'rm -rf "$1" && sync', "sh", COPY])
    try:
        out = stack.ssh(node, ["sudo", "sh", "-c", 's=$(date +%s%N); cp -a "$1" "$2" && sync && '
                               'ns=$(( $(date +%s%N) - s )) && echo "$(du -sb "$2" | cut -f1)" "$ns"',
                               "sh", inventory.data_dir(stack.spec), COPY], timeout=3600).stdout.split()
    finally:
        stack.ssh(node, ["sudo", "rm", "-rf", COPY], timeout=600)
    return int(out[0]), round(int(out[1]) / 1e9, 3)


def measure(stack: Stack, scale: int) -> dict:
    """One scale's measurements (see ``entry``), printing each step as it starts."""
    leader = stack.leader().name

    def say(what: str) -> None:
        print(f"scale {scale}: {what}", flush=True)

    say(f"re-creating the database bench on {leader} with pgbench -i ({ROWS_PER_SCALE * scale:,} accounts)")
    stack.psql(leader, "DROP DATABASE IF EXISTS bench WITH (FORCE)")
    stack.psql(leader, "CREATE DATABASE bench")
    pgbench = f"/usr/lib/postgresql/{stack.spec.postgres.version}/bin/pgbench"
    init_s = _seconds(lambda: stack.ssh(leader, ["sudo", "-u", "postgres", pgbench, "-i", "-s", str(scale),
                                                 "--quiet", "bench"], timeout=3600))
    db_bytes = int(stack.psql(leader, "SELECT sum(pg_database_size(oid)) FROM pg_database")[0][0])
    say(f"{db_bytes / MB:.0f} MB in the cluster; a full backup")
    backup_s = _seconds(lambda: backups.take(stack, "full"))
    say(f"a plain copy of {leader}'s data directory to {COPY}")
    copy_bytes, copy_s = copy_seconds(stack, leader)
    say("the whole cluster restored from the repository, in place")
    steps = restore.restore(stack, None, progress=say)
    rows = int(stack.psql(stack.leader().name, "SELECT count(*) FROM pgbench_accounts", "bench")[0][0])
    return {"db_bytes": db_bytes, "copy_bytes": copy_bytes, "init_s": init_s, "backup_s": backup_s,
            "copy_s": copy_s, "steps": steps, "rows": rows}


def _scales(text: str) -> list[int]:
    scales = [int(x) for x in text.split(",")]
    if min(scales) < 1:
        raise argparse.ArgumentTypeError(f"pgbench scale factors are positive integers, not {text}")
    return scales


def main() -> int:
    parser = argparse.ArgumentParser(description="pgBackRest's restore time and throughput for pgbench databases "
                                     "of a few sizes, beside a plain copy of the data directory (destroys the "
                                     "stack's data)")
    parser.add_argument("--stack", "--name", dest="stack", required=True,
                        help="the live stack to measure (its data is destroyed)")
    parser.add_argument("--scales", default="1,10,50", type=_scales,
                        help="pgbench scale factors, comma-separated (default 1,10,50)")
    parser.add_argument("--out", type=Path, default=REPORTS / "restore.json",
                        help="the report (default reports/restore.json)")
    args = parser.parse_args()
    stack = Stack.attach(args.stack)
    free = shutil.disk_usage(STATE_ROOT).free
    scales, skipped = plan(args.scales, free, len(stack.spec.nodes))
    for s in skipped:
        print(f"skipped: {s['reason']}", flush=True)
    host = machine(stack, free)
    entries, stopped = run(scales, lambda scale: measure(stack, scale))
    out = report(host, entries, skipped + stopped)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 1 if out["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
