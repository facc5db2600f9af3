"""PostgreSQL 15's parameter catalogue: the vendored table is what the image's binary reports, and
values are read as PostgreSQL reads them (units to the base unit, booleans, enums, ranges)."""

from __future__ import annotations

import os
import shutil

import pytest

from deployer import pg_parameters as pg
from deployer.inventory import image_packages
from deployer.spec import load_spec
from deployer.targets.local.image import image_key
from deployer.targets.local.target import IMAGE_CACHE


def _image():
    spec = load_spec()
    root = IMAGE_CACHE / image_key(*image_packages(spec), admin_user=spec.admin_user)
    if not (root / "READY").is_file():
        pytest.skip(f"no VM image at {root} (make image bakes it)")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("regenerating the catalogue needs root and unshare (a mount namespace)")
    return root / "rootfs"


def test_the_vendored_catalogue_is_what_the_images_postgresql_reports():
    fresh = pg.generate(_image()).splitlines()
    vendored = pg.CATALOGUE.read_text().splitlines()
    gone, new = sorted(set(vendored) - set(fresh)), sorted(set(fresh) - set(vendored))
    assert not gone and not new, (f"{pg.CATALOGUE} differs from the image's PostgreSQL; regenerate it (see its header). "
                                  f"vendored only: {gone[:5]}; binary only: {new[:5]}")


def test_the_catalogue_holds_postgresql_15s_parameters():
    assert len(pg.catalogue()) > 300
    assert pg.parameter("TIMEZONE").name == "TimeZone"
    assert (pg.context("shared_buffers"), pg.context("work_mem"), pg.context("wal_sender_timeout")) == (
        "postmaster", "user", "user")
    assert pg.needs_restart("max_connections") and pg.needs_restart("shared_buffers")
    assert not pg.needs_restart("checkpoint_timeout") and not pg.needs_restart("work_mem")
    assert not pg.parameter("transaction_isolation").settable and not pg.parameter("server_version").settable
    assert pg.parameter("block_size").context == "internal"
    with pytest.raises(KeyError, match="'no_such_thing' is not a PostgreSQL 15 parameter"):
        pg.context("no_such_thing")


@pytest.mark.parametrize("name, value, setting", [
    ("shared_buffers", "128MB", "16384"),  # base unit 8kB
    ("shared_buffers", "1.5GB", "196608"),
    ("shared_buffers", 16384, "16384"),
    ("work_mem", "4MB", "4096"),
    ("work_mem", "64 kB", "64"),
    ("wal_keep_size", "1GB", "1024"),
    ("wal_sender_timeout", "10s", "10000"),
    ("wal_sender_timeout", "1.5s", "1500"),
    ("autovacuum_naptime", "1min", "60"),  # base unit s
    ("autovacuum_naptime", "1500ms", "2"),  # rounded to the base unit, half to even
    ("log_rotation_age", "1d", "1440"),  # base unit min
    ("max_connections", "150", "150"),
    ("max_connections", 150.4, "150"),
    ("vacuum_cost_delay", "500us", "0.5"),  # a real keeps its fraction
    ("checkpoint_completion_target", 0.9, "0.9"),
    ("fsync", True, "on"), ("fsync", "off", "off"), ("fsync", "YES", "on"), ("fsync", "t", "on"),
    ("fsync", "of", "off"), ("fsync", 0, "off"),
    ("synchronous_commit", "Remote_Apply", "remote_apply"),
    ("synchronous_commit", False, "off"),  # YAML's off, for an enum that has on/off
    ("TimeZone", "UTC", "UTC"),
    ("shared_preload_libraries", "pg_stat_statements", "pg_stat_statements"),
])
def test_values_read_as_postgresql_reports_them(name, value, setting):
    assert pg.normalise(name, value) == setting


@pytest.mark.parametrize("name, value, message", [
    ("shared_buffers", "128mb", "'mb' is not one of TB, GB, MB, kB, B"),
    ("shared_buffers", "8", r"16 \.\. 1073741823 .* seen '8'"),
    ("shared_buffers", "10s", "'s' is not one of"),
    ("wal_sender_timeout", "10MB", "'MB' is not one of d, h, min, s, ms, us"),
    ("max_connections", "10s", "it takes no unit"),
    ("max_connections", "300000", r"1 \.\. 262143"),
    ("max_connections", "0x10", "seen '0x10'"),  # PostgreSQL reads hex and octal; refused here
    ("max_connections", "010", "seen '010'"),
    ("max_connections", True, "not a YAML boolean"),
    ("max_connections", "many", "expected an integer"),
    ("checkpoint_completion_target", 2, r"0 \.\. 1"),
    ("fsync", "o", "expected a boolean"), ("fsync", "maybe", "expected a boolean"), ("fsync", 2, "expected a boolean"),
    ("synchronous_commit", "true", "one of local, remote_write, remote_apply, on, off"),
    ("wal_level", True, "not a YAML boolean"),
    ("application_name", False, "quote it"),
    ("search_path", ["a", "b"], "seen list"),
])
def test_values_postgresql_would_refuse_are_refused_naming_what_it_expects(name, value, message):
    with pytest.raises(ValueError, match=message):
        pg.normalise(name, value)
