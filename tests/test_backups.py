"""The backups' verdicts over read-backs shaped as pgBackRest and PostgreSQL report them (each with
the defect it must catch), the schedule's decision in the nodes' backup script, the repository as
the roles render it on both targets, and the local blob endpoint's network rules."""

from __future__ import annotations

import importlib.util
import json

import pytest

from deployer import backups
from deployer.inventory import pgbackrest_conf, render_extravars, repository_vars
from deployer.paths import ANSIBLE_DIR
from deployer.spec import load_spec, parse_spec
from deployer.targets.base import BackupRepository
from deployer.targets.local.network import Layout
from deployer.targets.local.storage import Storage

NOW = 1_800_000_000.0
HOUR = 3600.0


def archiver(**changes) -> backups.Archiver:
    base = dict(last_archived_wal="00000001000000000000000B", last_archived_at=NOW - 30, failed_count=6,
                last_failed_wal="000000010000000000000001", last_failed_at=NOW - 600, now=NOW, ready=())
    return backups.Archiver(**(base | changes))


def test_archiving_that_failed_before_its_last_success_and_keeps_up_passes():
    assert backups.archive_problems(archiver(), 90) == []
    assert backups.archive_problems(archiver(ready=(("00000001000000000000000C.ready", NOW - 89),)), 90) == []


@pytest.mark.parametrize("changes, expected", [
    ({"last_failed_at": NOW - 5, "last_failed_wal": "00000001000000000000000C"},
     "archiving fails: the last attempt (00000001000000000000000C) failed 5 s ago, after the last success "
     "(00000001000000000000000B, 30 s ago)"),
    ({"last_archived_at": None, "last_archived_wal": ""}, "after the last success (none ever)"),
    ({"ready": (("00000001000000000000000C.ready", NOW - 91), ("00000001000000000000000D.ready", NOW - 10))},
     "1 WAL segment(s) waited for the archive longer than the 90 s the spec allows (archive_timeout plus the "
     "push's margin): the oldest, 00000001000000000000000C, for 91 s"),
])
def test_archiving_that_fails_now_or_falls_behind_is_named(changes, expected):
    problems = backups.archive_problems(archiver(**changes), 90)
    assert len(problems) == 1 and expected in problems[0]


def test_the_archivers_rows_as_psql_returns_them():
    row = ["00000001000000000000000B", "1799999970.5", "6", "", "", "1800000000"]
    seen = backups.parse_archiver(row, [["00000001000000000000000C.ready", "1799999990"]])
    assert seen == archiver(last_archived_at=NOW - 29.5, last_failed_wal="", last_failed_at=None,
                            ready=(("00000001000000000000000C.ready", NOW - 10),))


def info(*sets: tuple[str, str, float]) -> str:
    """``pgbackrest --output=json info`` trimmed to what the checks read (labels, types, times)."""
    return json.dumps([{"name": "pgha", "status": {"code": 0, "message": "ok"},
                        "backup": [{"label": label, "type": kind, "timestamp": {"start": stop - 5, "stop": stop}}
                                   for label, kind, stop in sets]},
                       {"name": "other", "status": {"code": 0, "message": "ok"}, "backup": []}])


def test_the_newest_full_backup_within_the_schedule_passes():
    status, sets = backups.parse_backups(info(("F2", "full", NOW - 2 * HOUR), ("F1", "full", NOW - 200 * HOUR),
                                              ("D1", "diff", NOW - HOUR)), "pgha")
    assert status == "ok" and [b.label for b in sets] == ["F1", "F2", "D1"]
    assert backups.full_backup_problems(sets, NOW, 169 * HOUR) == []


@pytest.mark.parametrize("sets, expected", [
    ((), "no full backup in the repository (it lists 0 backup(s): none)"),
    ((("D1", "diff", NOW - HOUR),), "no full backup in the repository (it lists 1 backup(s): D1)"),
    ((("F1", "full", NOW - 170 * HOUR), ("D1", "diff", NOW - HOUR)),
     "the newest full backup, F1, is 170.0 h old; the schedule promises at most 169.0 h"),
])
def test_a_missing_or_stale_full_backup_is_named(sets, expected):
    assert backups.full_backup_problems(backups.parse_backups(info(*sets), "pgha")[1], NOW, 169 * HOUR) == [expected]


def test_a_stanza_the_repository_lacks_is_named():
    assert backups.parse_backups(info(), "orders") == ("stanza orders not in the repository", [])


VERIFY_OK = ("2026-12-06 01:48:27.224 P00   INFO: verify command begin 2.45: --set=F1 --stanza=pgha\n"
             "2026-12-06 01:48:29.995 P00   INFO: verify command end: completed successfully (2773ms)\n")
VERIFY_MISSING = ("2026-12-06 01:55:19.039 P01   INFO: file missing '20261206-015449F/pg_data/postgresql.conf.lz4'\n"
                  "2026-12-06 01:55:19.040 P00   INFO: stanza: pgha\n"
                  "                                    status: error\n"
                  "                                      backup: 20261206-015449F, status: invalid, total files "
                  "checked: 1272, total valid files: 0\n"
                  "                                        missing: 1272\n"
                  "2026-12-06 01:55:19.040 P00   INFO: verify command end: completed successfully (3803ms)\n")


def test_verify_passes_on_a_complete_set_and_names_what_an_incomplete_one_misses():
    assert backups.verify_problems(VERIFY_OK) == []
    assert backups.verify_problems(VERIFY_MISSING) == [
        "status: error", "backup: 20261206-015449F, status: invalid, total files checked: 1272, total valid files: 0",
        "missing: 1272"]
    assert backups.verify_problems("ERROR: [039]: HTTP request failed")[0].startswith("verify did not complete")


def _script():
    spec = importlib.util.spec_from_file_location("pgha_backup", ANSIBLE_DIR / "roles/pgbackrest/files/pgha-backup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("found, expected", [
    ({}, "full"),
    ({"diff": NOW - HOUR, "any": NOW - HOUR}, "full"),
    ({"full": NOW - 168 * HOUR, "any": NOW - HOUR}, "full"),
    ({"full": NOW - 30 * HOUR, "any": NOW - 24 * HOUR}, "diff"),
    ({"full": NOW - 30 * HOUR, "diff": NOW - 2 * HOUR, "any": NOW - 2 * HOUR}, None),
])
def test_the_backup_script_owes_what_the_schedule_says(found, expected):
    assert _script().owed(found, 168, 24, NOW) == expected


LOCAL = BackupRepository(host="blob.pgha.internal", port=443, uri_style="path", account="pgharepo",
                         container="pgbackrest", key="bG9jYWw=", ca_file="/etc/pgha/tls/ca.crt", address="198.51.100.13")
AZURE = BackupRepository(host="stpgha1234.blob.core.windows.net", port=443, uri_style="host", account="stpgha1234",
                         container="pgbackrest", key="YXp1cmU=")


def _rendered(repo: BackupRepository, stanza: str | None = None) -> dict[str, str]:
    """pgbackrest.conf as the role renders it for ``repo`` on the default spec's nodes."""
    text = pgbackrest_conf(load_spec(), repo, stanza)
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


class _Secrets:
    def __getitem__(self, name):
        return f"pw-{name}"


def test_the_repository_is_configured_alike_on_both_targets_but_for_endpoint_and_credential():
    local, azure = _rendered(LOCAL), _rendered(AZURE)
    differ = sorted(k for k in local.keys() | azure.keys() if local.get(k) != azure.get(k))
    assert differ == ["repo1-azure-account", "repo1-azure-key", "repo1-azure-uri-style", "repo1-storage-ca-file",
                      "repo1-storage-host"]
    assert local["repo1-type"] == azure["repo1-type"] == "azure" and local["repo1-storage-port"] == "443"
    assert local["repo1-azure-key"] == "bG9jYWw=" and local["pg1-path"] == "/var/lib/postgresql/15/pgha"


def test_another_stacks_repository_is_configured_as_the_role_would_with_its_own_stanza():
    """What ``restore --into`` writes on the new stack's node: the source's endpoint and stanza."""
    text = pgbackrest_conf(load_spec(), AZURE, stanza="other")
    assert "[other]" in text and "[pgha]" not in text and "repo1-storage-host=stpgha1234.blob.core.windows.net" in text


def test_the_key_travels_as_an_extravar_never_in_the_inventory():
    assert "pgbackrest_repo_key" not in repository_vars(LOCAL) and "bG9jYWw=" not in json.dumps(repository_vars(LOCAL))
    assert render_extravars(_Secrets(), LOCAL)["pgbackrest_repo_key"] == "bG9jYWw="
    assert "pgbackrest_repo_key" not in render_extravars(_Secrets())
    assert "bG9jYWw=" not in repr(LOCAL), "the key is hidden from repr"


def test_the_repositorys_url_names_the_account_as_its_style_says():
    assert LOCAL.url == "https://198.51.100.13:443/pgharepo"
    assert AZURE.url == "https://stpgha1234.blob.core.windows.net:443"


def test_the_blob_endpoints_network_rules_admit_the_subnet_and_the_control_plane_only(tmp_path):
    spec = load_spec()
    layout = Layout(spec, "pgha")
    rules = Storage(layout, tmp_path, None, "pgbackrest").firewall()
    assert "policy drop;" in rules
    admitted = [line.split("ip saddr ")[1].split()[0] for line in rules.splitlines() if "ip saddr" in line]
    assert admitted == [str(spec.network.subnet_cidr), str(layout.mgmt.outer)]
    assert str(layout.client_link.outer) not in rules and str(layout.neighbour_link.outer) not in rules


def test_archive_settings_come_from_the_backup_section_only():
    spec = load_spec()
    assert spec.postgres_settings()["archive_command"] == f"/usr/local/bin/pgbackrest-archive-push {spec.stanza} %p"
    raw = spec.model_dump(mode="json")
    assert "archive_mode" not in parse_spec({**raw, "backup": {"enabled": False}}).postgres_settings()
    with pytest.raises(Exception, match="the backup section sets the WAL archive"):
        parse_spec({**raw, "postgres": {"parameters": {"archive_command": "/bin/true"}}})
    with pytest.raises(Exception, match="rpo_s \\(60\\) cannot be kept"):
        parse_spec({**raw, "backup": {"archive_timeout_s": 60, "rpo_s": 60}})


def _archive_push():
    spec = importlib.util.spec_from_file_location(
        "archive_push", ANSIBLE_DIR / "roles/pgbackrest/files/pgbackrest-archive-push.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("segment, status, timeline, skip", [
    ("00000002000000000000000B", 45, 11, True),   # an abandoned timeline's copy the archive holds otherwise
    ("0000000B000000000000000B", 45, 11, False),  # the current timeline's: a real conflict, refused
    ("00000002000000000000000B", 1, 11, False),   # any other failure (the endpoint down, say): refused
    ("00000002000000000000000B.partial", 45, 11, False),
    ("0000000B.history", 45, 11, False),
])
def test_the_archive_command_skips_only_an_abandoned_timelines_conflicting_segment(segment, status, timeline, skip):
    assert _archive_push().skipped(segment, status, timeline) is skip


def test_the_newest_timeline_is_read_from_the_history_files(tmp_path):
    assert _archive_push().newest_timeline(tmp_path) == 1
    for name in ("00000002.history", "0000000B.history", "00000003000000000000000A"):
        (tmp_path / name).write_text("")
    assert _archive_push().newest_timeline(tmp_path) == 11
