"""``deployer restore``'s pieces that need no cluster: pgBackRest's restore command for each target
time, and the custom bootstrap method it adds to Patroni's configuration (run here on a copy)."""

from __future__ import annotations

import datetime as dt
import shlex
import subprocess
import sys

import yaml

from deployer import restore


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
