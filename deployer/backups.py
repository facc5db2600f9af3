"""pgBackRest's repository as the cluster uses it: what the acceptance checks read on the nodes, their
verdicts, and ``deployer backup``.

Read-backs (never our configuration echoed back): ``pg_stat_archiver`` and the archive status
directory of the leader (``read_archiver``), ``pgbackrest info`` (``read_backups``) and ``verify``,
run on the nodes as postgres through SSH. Verdicts are pure functions over them, each returning the
problems found as sentences naming what was expected and what was seen (none: it holds):

- ``archive_problems``: the archiver's last attempt did not fail after its last success, and no
  finished WAL segment has waited longer than ``backup.archive_max_age_s`` for the repository;
- ``full_backup_problems``: a full backup exists, younger than ``backup.full_max_age_s``.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys

from deployer.stack import Stack
from deployer.targets.base import TargetError

#: The leader's archiver and its clock, one row (empty strings for what never happened).
ARCHIVER_QUERY = ("SELECT coalesce(last_archived_wal, ''), coalesce(extract(epoch FROM last_archived_time)::text, ''), "
                  "failed_count, coalesce(last_failed_wal, ''), coalesce(extract(epoch FROM last_failed_time)::text, ''), "
                  "extract(epoch FROM now()) FROM pg_stat_archiver")
#: Finished segments waiting for the archive (``.ready``), with the time each was marked.
READY_QUERY = ("SELECT name, extract(epoch FROM modification) FROM pg_ls_archive_statusdir() "
               "WHERE name LIKE '%.ready' ORDER BY modification")
#: pgBackRest's configuration on every node (the pgbackrest role writes it; it holds the key).
CONFIG = "/etc/pgbackrest.conf"
#: The script the pgbackrest role installs (its default ``pgbackrest_backup_script``).
BACKUP_SCRIPT = "/usr/local/bin/pgha-backup"


@dataclasses.dataclass(frozen=True)
class Archiver:
    """``pg_stat_archiver`` of one node as epoch seconds (None: never), the node's ``now()``, and the
    segments waiting for the archive: ``(file name, marked at)``, oldest first."""

    last_archived_wal: str
    last_archived_at: float | None
    failed_count: int
    last_failed_wal: str
    last_failed_at: float | None
    now: float
    ready: tuple[tuple[str, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class Backup:
    """One backup set as ``pgbackrest info`` lists it (epoch seconds)."""

    label: str
    type: str
    start: float
    stop: float


def _epoch(text: str) -> float | None:
    return float(text) if text else None


def parse_archiver(row: list[str], ready: list[list[str]]) -> Archiver:
    """``ARCHIVER_QUERY``'s row and ``READY_QUERY``'s rows as psql returns them."""
    wal, at, failed, failed_wal, failed_at, now = row
    return Archiver(wal, _epoch(at), int(failed), failed_wal, _epoch(failed_at), float(now),
                    tuple((name, float(marked)) for name, marked in ready))


def archive_problems(archiver: Archiver, max_age_s: float) -> list[str]:
    """What is wrong with a leader's archiving (see the module docstring); empty when nothing is."""
    problems = []
    if archiver.last_failed_at is not None and (archiver.last_archived_at is None
                                                or archiver.last_failed_at > archiver.last_archived_at):
        problems.append(f"archiving fails: the last attempt ({archiver.last_failed_wal}) failed "
                        f"{archiver.now - archiver.last_failed_at:.0f} s ago, after the last success "
                        + (f"({archiver.last_archived_wal}, {archiver.now - archiver.last_archived_at:.0f} s ago)"
                           if archiver.last_archived_at is not None else "(none ever)")
                        + f"; {archiver.failed_count} failures since the statistics' reset")
    late = [(name, archiver.now - marked) for name, marked in archiver.ready if archiver.now - marked > max_age_s]
    if late:
        problems.append(f"{len(late)} WAL segment(s) waited for the archive longer than the {max_age_s:.0f} s "
                        f"the spec allows (archive_timeout plus the push's margin): the oldest, "
                        f"{late[0][0].removesuffix('.ready')}, for {late[0][1]:.0f} s")
    return problems


def parse_backups(info: str, stanza: str) -> tuple[str, list[Backup]]:
    """``pgbackrest --output=json info``: the stanza's status message and its backups, oldest first."""
    for entry in json.loads(info):
        if entry.get("name") == stanza:
            sets = [Backup(b["label"], b["type"], float(b["timestamp"]["start"]), float(b["timestamp"]["stop"]))
                    for b in entry.get("backup", [])]
            return entry["status"]["message"], sorted(sets, key=lambda b: b.stop)
    return f"stanza {stanza} not in the repository", []


def full_backup_problems(backups: list[Backup], now: float, max_age_s: float) -> list[str]:
    """A full backup exists, the newest no older than ``max_age_s`` at ``now``; problems otherwise."""
    fulls = [b for b in backups if b.type == "full"]
    if not fulls:
        return [f"no full backup in the repository (it lists {len(backups)} backup(s): "
                f"{', '.join(b.label for b in backups) or 'none'})"]
    age = now - fulls[-1].stop
    return [] if age <= max_age_s else [
        f"the newest full backup, {fulls[-1].label}, is {age / 3600:.1f} h old; the schedule promises at most "
        f"{max_age_s / 3600:.1f} h"]


def verify_problems(output: str) -> list[str]:
    """``pgbackrest --log-level-console=info verify``'s output (it exits 0 whatever it finds, and
    prints a report only when something is wrong): empty when it completed with no report or a
    report saying ``status: ok``, else the report's lines (each invalid set, what is missing)."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if "INFO: stanza: " in line), None)
    if start is None:
        return [] if "verify command end: completed successfully" in output else [
            f"verify did not complete: {output.strip()[-300:]}"]
    report = [line.strip() for line in lines[start + 1:] if line.startswith(" ")]
    return [] if report[:1] == ["status: ok"] else report


# ----- read-backs and operations on a live stack -----

def pgbackrest(stack: Stack, node: str, *args: str, check: bool = True, timeout: float = 300):
    """``pgbackrest --stanza=<spec's> ARGS`` as postgres on ``node``; the completed process."""
    return stack.ssh(node, ["sudo", "-u", "postgres", "pgbackrest", f"--stanza={stack.spec.stanza}", *args],
                     check=check, timeout=timeout)


def read_archiver(stack: Stack, node: str) -> Archiver:
    """The node's archiver statistics and waiting segments."""
    return parse_archiver(stack.psql(node, ARCHIVER_QUERY)[0], stack.psql(node, READY_QUERY))


def read_backups(stack: Stack, node: str) -> tuple[str, list[Backup]]:
    """The repository's status and backups as ``node`` reads them (``parse_backups``)."""
    return parse_backups(pgbackrest(stack, node, "--output=json", "info").stdout, stack.spec.stanza)


def take(stack: Stack, kind: str = "auto") -> str:
    """Run the backup script on the leader (``kind``: ``full``, ``diff``, or ``auto``: what the
    schedule owes); its one-line account. TargetError with pgBackRest's message when it fails."""
    b = stack.spec.backup
    command = [BACKUP_SCRIPT, f"--stanza={stack.spec.stanza}", f"--full-every-h={b.full_every_h}",
               f"--diff-every-h={b.diff_every_h}", f"--type={kind}",
               f"--psql=/usr/lib/postgresql/{stack.spec.postgres.version}/bin/psql"]
    leader = stack.leader().name
    out = stack.ssh(leader, f"sudo -u postgres {shlex.join(command)} 2>&1", timeout=3600, check=False)
    if out.returncode != 0:
        raise TargetError(f"the backup on {leader} failed ({out.returncode}): {out.stdout.strip()[-800:]}")
    return f"{leader}: {out.stdout.strip().splitlines()[-1]}"


def probe_repository(stack: Stack, vantage: list[str]) -> dict:
    """``deployer.blob_probe`` against the repository's container, run with ``vantage`` as the
    command prefix (``Target.vantage()``: the internet; ``[]``: the control machine), the key on
    its stdin; its answer (``reachable``, ``seconds``, ``detail``)."""
    repo = stack.target.backup_repository()
    argv = [*vantage, sys.executable, "-m", "deployer.blob_probe", repo.url, repo.account, repo.container,
            stack.target.ca_file if repo.ca_file else ""]
    out = subprocess.run(argv, input=repo.key + "\n", capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise TargetError(f"the repository probe failed to run ({out.returncode}): {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)
