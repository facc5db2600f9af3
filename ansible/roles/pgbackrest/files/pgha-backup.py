#!/usr/bin/python3
"""Take the backup pgBackRest's schedule owes, on the leader only (run as postgres by every node's
timer, and by `deployer backup`).

On a replica it does nothing. On the leader it reads the repository (`pgbackrest info`): a full
backup is owed when none exists or the newest is --full-every-h hours old, a differential one when
the newest backup of any kind is --diff-every-h hours old; --type full|diff forces one. The schedule
thus lives in the repository and follows the leader across failovers. Prints one line saying what it
did ("took full backup ...", "nothing due ...", "replica ..."); exits with pgBackRest's status.
"""

import argparse
import json
import subprocess
import sys
import time

def leads(psql: str) -> bool:
    """True when this node's PostgreSQL is the primary (not in recovery)."""
    out = subprocess.run([psql, "-XAtc", "SELECT pg_is_in_recovery()"], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "f"


def newest(stanza: str) -> dict[str, float]:
    """The stop time of the newest backup of each type in the repository (full, diff, incr, any)."""
    out = subprocess.run(["pgbackrest", f"--stanza={stanza}", "--output=json", "info"],
                         capture_output=True, text=True, check=True)
    found: dict[str, float] = {}
    for entry in json.loads(out.stdout):
        if entry.get("name") != stanza:
            continue
        for backup in entry.get("backup", []):
            stop = float(backup["timestamp"]["stop"])
            for kind in (backup["type"], "any"):
                found[kind] = max(found.get(kind, 0.0), stop)
    return found


def owed(found: dict[str, float], full_every_h: float, diff_every_h: float, now: float) -> str | None:
    """The backup type the schedule owes now, None when nothing is due."""
    if "full" not in found or now - found["full"] >= full_every_h * 3600:
        return "full"
    if now - found["any"] >= diff_every_h * 3600:
        return "diff"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stanza", required=True)
    parser.add_argument("--full-every-h", type=float, required=True)
    parser.add_argument("--diff-every-h", type=float, required=True)
    parser.add_argument("--type", choices=("auto", "full", "diff"), default="auto")
    parser.add_argument("--psql", default="/usr/lib/postgresql/15/bin/psql")
    args = parser.parse_args()
    if not leads(args.psql):
        print("replica: the leader takes the backups")
        return 0
    kind = args.type if args.type != "auto" else owed(newest(args.stanza), args.full_every_h, args.diff_every_h,
                                                       time.time())
    if kind is None:
        print("nothing due: the newest backups are younger than the schedule's periods")
        return 0
    started = time.monotonic()
    rc = subprocess.run(["pgbackrest", f"--stanza={args.stanza}", f"--type={kind}", "backup"]).returncode
    print(f"took {kind} backup in {time.monotonic() - started:.1f} s" if rc == 0 else f"{kind} backup failed ({rc})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
