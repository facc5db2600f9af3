"""The backups as the cluster really keeps them (``deployer.backups``): WAL reaches the repository in
time and without failing, every node reaches the repository, a complete full backup younger than
the schedule promises exists, the repository answers no one on the internet, and its key is private.
Read-only but for ``pgbackrest check``, which switches the leader's WAL segment to see it archived."""

from __future__ import annotations

import stat
import time

import pytest

from deployer import backups

pytestmark = pytest.mark.acceptance


@pytest.fixture(autouse=True)
def _backups_on(stack):
    if not stack.spec.backup.enabled:
        pytest.skip("the spec turns backups off (backup.enabled: false)")


def test_the_leader_archives_every_wal_segment_in_time_and_without_failing(stack):
    """``pg_stat_archiver`` and the archive status directory of the leader: its last attempt did not
    fail after its last success, and no finished segment waited longer than ``archive_timeout`` plus
    the push's margin (``backup.archive_max_age_s``)."""
    leader = stack.leader().name
    problems = backups.archive_problems(backups.read_archiver(stack, leader), stack.spec.backup.archive_max_age_s)
    assert not problems, f"on the leader {leader}: " + "; ".join(problems)


def test_every_node_reaches_the_repository_and_the_leaders_wal_arrives_there(stack):
    """``pgbackrest info`` on every node answers ``ok`` (its endpoint, TLS and key work from there: a
    replica promoted tomorrow must archive), and ``pgbackrest check`` on the leader sees a freshly
    switched WAL segment arrive within ``backup.archive_max_age_s``."""
    statuses = {}
    for node in stack.spec.nodes:
        out = backups.pgbackrest(stack, node.name, "--io-timeout=5", "--output=json", "info", check=False,
                                 timeout=120)
        statuses[node.name] = (backups.parse_backups(out.stdout, stack.spec.stanza)[0] if out.returncode == 0
                               else f"failed ({out.returncode}): {out.stderr.strip()[-300:]}")
    unreached = {node: status for node, status in statuses.items() if status != "ok"}
    assert not unreached, f"the repository, as each node sees it: expected ok everywhere, seen {unreached}"
    leader = stack.leader().name
    check = backups.pgbackrest(stack, leader, f"--archive-timeout={stack.spec.backup.archive_max_age_s}", "check",
                               check=False)
    assert check.returncode == 0, f"pgbackrest check on the leader {leader} failed: {check.stderr.strip()[-500:]}"


def test_a_complete_full_backup_younger_than_the_schedule_promises_exists(stack):
    """``pgbackrest info`` lists a full backup no older than ``backup.full_max_age_s``, and
    ``pgbackrest verify`` of that set finds every file of it in the repository, intact."""
    leader = stack.leader().name
    status, sets = backups.read_backups(stack, leader)
    problems = backups.full_backup_problems(sets, time.time(), stack.spec.backup.full_max_age_s)
    assert status == "ok" and not problems, f"repository status {status!r}: " + "; ".join(problems)
    newest = [b for b in sets if b.type == "full"][-1]
    verify = backups.pgbackrest(stack, leader, "--log-level-console=info", "verify", f"--set={newest.label}")
    problems = backups.verify_problems(verify.stdout)
    assert not problems, (f"the newest full backup {newest.label} is listed but incomplete in the repository "
                          f"(pgbackrest verify): {' '.join(problems)[:500]}")


def test_the_repository_answers_no_one_on_the_internet(stack):
    """An authenticated request for the container, with the account's key, from the internet vantage:
    refused, dropped or denied (the storage account's network rules admit the cluster's subnet only)."""
    seen = backups.probe_repository(stack, stack.target.vantage())
    assert not seen["reachable"], f"the repository answered a client on the internet: {seen['detail']}"


def test_the_repositorys_key_is_private_on_every_node_and_on_the_control_machine(stack):
    """pgBackRest's configuration (it holds the key) is mode 0600, owned by postgres, on every node;
    every file of the state directory holding the key is mode 0600."""
    wrong = {}
    for node in stack.spec.nodes:
        seen = stack.ssh(node.name, ["sudo", "stat", "-c", "%a %U", backups.CONFIG]).stdout.strip()
        if seen != "600 postgres":
            wrong[node.name] = seen
    key = stack.target.backup_repository().key.encode()
    holders = [p for p in stack.state.dir.rglob("*") if p.is_file() and not p.is_symlink() and key in p.read_bytes()]
    wrong |= {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in holders if stat.S_IMODE(p.stat().st_mode) != 0o600}
    assert holders, "no file of the state directory holds the repository's key"
    assert not wrong, f"expected mode 600 (and owner postgres on the nodes), seen {wrong}"
