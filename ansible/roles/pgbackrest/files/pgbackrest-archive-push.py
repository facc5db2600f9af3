#!/usr/bin/python3
"""PostgreSQL's archive_command: ``pgbackrest-archive-push STANZA %p`` runs pgBackRest's
``archive-push``, and answers its exit status, with one exception.

After a failover the old primary may have written a segment of its old timeline past the point
where the new timeline forked (a frozen or isolated primary still writes; Patroni archives what it
left ready before pg_rewind), while the new leader archived that segment as it knew it: pgBackRest
then refuses the node's copy (error 45, "already exists in the archive with a different checksum")
on every attempt, and PostgreSQL's archiver, which archives in order, is stuck behind it for good:
nothing written later reaches the archive. A segment of a timeline older than the newest the node
knows (its ``pg_wal/*.history`` files) belongs to a history a failover abandoned; the archive's copy
is kept (the newer timelines fork from it before the two copies differ) and the node's is skipped,
saying so on stderr (PostgreSQL's log). Any other failure, and every segment of the current
timeline, is refused as pgBackRest refuses it.
"""

import os
import pathlib
import subprocess
import sys

#: pgBackRest's exit status for "WAL file already exists in the archive with a different checksum".
EXISTS_WITH_OTHER_CONTENT = 45


def newest_timeline(wal_dir: pathlib.Path) -> int:
    """The newest timeline this node knows: its history files' highest (1 without any)."""
    return max((int(p.name[:8], 16) for p in wal_dir.glob("*.history")), default=1)


def skipped(segment: str, status: int, timeline: int) -> bool:
    """True when a refused segment belongs to an abandoned, older timeline (see the module docstring)."""
    return status == EXISTS_WITH_OTHER_CONTENT and len(segment) == 24 and int(segment[:8], 16) < timeline


def main() -> int:
    stanza, path = sys.argv[1:3]
    status = subprocess.run(["pgbackrest", f"--stanza={stanza}", "archive-push", path]).returncode
    segment = os.path.basename(path)
    timeline = newest_timeline(pathlib.Path(path).parent)
    if status and skipped(segment, status, timeline):
        print(f"pgbackrest-archive-push: {segment} of timeline {int(segment[:8], 16)} differs from the archive's copy; "
              f"this node is on timeline {timeline}: the archive's copy is kept, this one skipped", file=sys.stderr)
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
