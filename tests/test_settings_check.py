"""The verdicts of ``suites/test_settings.py`` over read-backs shaped as the platform reports them:
silent on a stack that runs the spec, and failing, naming node, setting, spec and running value, on
each defect they guard."""

from __future__ import annotations

from deployer.settings_check import pending_restarts, setting_differences, settings_query, version_differences
from deployer.spec import load_spec

SPEC = load_spec()
EXPECTED = SPEC.postgres_settings()  # max_connections '100', wal_sender_timeout '10000', the WAL archive's
NODES = [n.name for n in SPEC.nodes]


def rows(max_connections="100", wal_sender_timeout="10000", pending="f"):
    """``settings_query``'s rows as psql returns them: every spec setting as the spec has it, but
    these two."""
    given = {**EXPECTED, "max_connections": max_connections, "wal_sender_timeout": wal_sender_timeout}
    return [[name.lower(), value, pending if name == "max_connections" else "f"] for name, value in given.items()]


def view(pending_reason=None, version=SPEC.patroni.version):
    """``GET /patroni`` of Patroni 4.1, trimmed to what the checks read."""
    out = {"state": "running", "role": "replica", "patroni": {"version": version, "scope": "pgha"}}
    if pending_reason is not None:
        out |= {"pending_restart": True, "pending_restart_reason": pending_reason}
    return out


def test_the_query_asks_pg_settings_for_every_spec_setting_by_lower_case_name():
    query = settings_query({"max_connections": "100", "TimeZone": "UTC"})
    assert "FROM pg_catalog.pg_settings" in query and "ARRAY['max_connections', 'timezone']" in query


def test_a_stack_running_the_spec_passes_every_check():
    assert setting_differences(EXPECTED, {n: rows() for n in NODES}) == []
    assert pending_restarts({n: view() for n in NODES}) == []
    assert version_differences(SPEC, {n: view() for n in NODES}, {n: 150020 for n in NODES}) == []


def test_a_running_value_other_than_the_spec_names_node_setting_and_both_values():
    running = {n: rows() for n in NODES} | {"pg2": rows(wal_sender_timeout="11000")}
    assert setting_differences(EXPECTED, running) == ["pg2: wal_sender_timeout: spec '10000', running '11000'"]


def test_a_setting_pending_a_restart_fails_even_while_its_running_value_is_the_specs():
    running = {n: rows(pending="t") for n in NODES}
    wrong = setting_differences(EXPECTED, running)
    assert len(wrong) == 3 and all("max_connections" in w and "waits for a restart" in w for w in wrong)


def test_a_setting_postgresql_does_not_report_is_absent():
    running = {"pg1": [row for row in rows() if row[0] != "wal_sender_timeout"]}
    assert setting_differences(EXPECTED, running) == ["pg1: wal_sender_timeout: spec '10000', running '(absent)'"]


def test_names_match_whatever_case_postgresql_spells_them_in():
    assert setting_differences({"TimeZone": "UTC"}, {"pg1": [["TimeZone", "UTC", "f"]]}) == []
    assert setting_differences({"TimeZone": "UTC"}, {"pg1": [["TimeZone", "Etc/UTC", "f"]]}) == [
        "pg1: TimeZone: spec 'UTC', running 'Etc/UTC'"]


def test_a_member_pending_a_restart_is_named_with_patronis_reason():
    views = {n: view() for n in NODES} | {"pg3": view({"max_connections": {"old_value": "100", "new_value": "101"}})}
    assert pending_restarts(views) == ["pg3 waits for a restart to apply max_connections '100' -> '101'"]
    assert pending_restarts({"pg1": {"pending_restart": True}}) == [
        "pg1 waits for a restart to apply a change (Patroni names none)"]


def test_a_package_version_other_than_the_specs_is_named():
    views = {n: view() for n in NODES} | {"pg1": view(version="4.0.6")}
    numbers = {n: 150020 for n in NODES} | {"pg3": 160004}
    assert version_differences(SPEC, views, numbers) == [
        f"pg1: Patroni: spec {SPEC.patroni.version}, running 4.0.6",
        "pg3: PostgreSQL: spec 15, running 16 (server_version_num 160004)"]
