"""``deployer restore``'s pieces that need no cluster: pgBackRest's restore command for each target
time and repository, the custom bootstrap method it adds to Patroni's configuration (run here on a
copy), and the check that no node replays WAL from another stack's repository afterwards."""

from __future__ import annotations

import datetime as dt
import shlex
import subprocess
import sys

import pytest
import yaml

from deployer import restore
from deployer.targets import TargetError


def test_to_the_end_of_the_archive_the_restore_names_no_target():
    assert restore.restore_command("pgha", None) == "pgbackrest --stanza=pgha --delta restore"


def test_to_a_point_in_time_the_restore_stops_at_it_in_utc_and_promotes():
    when = dt.datetime(2026, 12, 6, 3, 10, 5, 250000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    argv = shlex.split(restore.restore_command("pgha", when))
    assert argv == ["pgbackrest", "--stanza=pgha", "--delta", "--type=time",
                    "--target=2026-12-06 02:10:05.250000+00", "--target-action=promote", "restore"]


def test_the_bootstrap_method_is_added_beside_a_copy_of_the_configuration(tmp_path, monkeypatch):
    config = tmp_path / "patroni.yml"
    original = {"scope": "pgha", "bootstrap": {"dcs": {"ttl": 20}}}
    config.write_text(yaml.safe_dump(original))
    monkeypatch.setattr(restore, "PATRONI_CONFIG", str(config))
    program = restore._with_method("pgbackrest --stanza=pgha --delta restore")
    subprocess.run([sys.executable, "-c", program], check=True)
    changed = yaml.safe_load(config.read_text())
    assert changed["bootstrap"]["method"] == restore.METHOD
    assert changed["bootstrap"][restore.METHOD] == {"command": "pgbackrest --stanza=pgha --delta restore",
                                                    "keep_existing_recovery_conf": True, "no_params": True}
    assert changed["bootstrap"]["dcs"] == {"ttl": 20} and changed["scope"] == "pgha"
    assert yaml.safe_load((tmp_path / "patroni.yml.before-restore").read_text()) == original


def test_from_another_stacks_repository_the_restore_and_its_wal_replay_read_its_configuration():
    argv = shlex.split(restore.restore_command("pgha", None, "/etc/pgbackrest-source.conf"))
    assert argv == ["pgbackrest", "--config=/etc/pgbackrest-source.conf", "--stanza=pgha", "--delta",
                    "--recovery-option=restore_command=pgbackrest --config=/etc/pgbackrest-source.conf --stanza=pgha "
                    'archive-get %f "%p"', "restore"]


def test_every_node_replaying_from_the_source_repository_is_named(monkeypatch):
    class Cluster:
        def psql(self, node, query):
            assert query == "SHOW restore_command"
            return [["pgbackrest --config=/etc/pgbackrest-source.conf --stanza=pgha archive-get %f \"%p\""]] \
                if node == "pg2" else [['pgbackrest --stanza=pgha archive-get %f "%p"']]

    restore._reads_own_archive(Cluster(), ["pg1", "pg3"])
    with pytest.raises(TargetError, match="still reads the source repository's configuration on pg2"):
        restore._reads_own_archive(Cluster(), ["pg1", "pg2", "pg3"])
