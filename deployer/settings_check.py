"""Is what runs what the spec says? Pure verdicts over read-backs, one sentence per difference
(empty: none), naming the node, the setting or package, the spec's value and the running one.
``suites/test_settings.py`` reads the platform and asserts on these; ``tests/test_settings_check.py``
shows each failing on the defect it guards."""

from __future__ import annotations

from collections.abc import Mapping

from deployer.spec import StackSpec

#: What ``running_settings`` needs from ``pg_settings``; a row per setting.
PG_SETTINGS_QUERY = ("SELECT name, setting, pending_restart FROM pg_catalog.pg_settings "
                     "WHERE lower(name) = ANY(ARRAY[{names}])")


def settings_query(expected: Mapping[str, str]) -> str:
    """The ``pg_settings`` query for ``expected``'s names (PostgreSQL parameter names: no quoting needed)."""
    return PG_SETTINGS_QUERY.format(names=", ".join(f"'{name.lower()}'" for name in expected))


def setting_differences(expected: Mapping[str, str], running: Mapping[str, list[list[str]]]) -> list[str]:
    """``expected``: ``StackSpec.postgres_settings()``; ``running``: node -> the rows of
    ``settings_query`` there (name, setting, pending_restart ``t``/``f``). A difference is a setting
    whose running value is not the spec's, one absent, or one whose configuration changed and waits
    for a restart (PostgreSQL's own ``pending_restart``: the file says something else now)."""
    out = []
    for node, rows in running.items():
        seen = {name.lower(): (setting, pending == "t") for name, setting, pending in rows}
        for name, value in expected.items():
            setting, pending = seen.get(name.lower(), ("(absent)", False))
            if setting != value:
                out.append(f"{node}: {name}: spec {value!r}, running {setting!r}")
            elif pending:
                out.append(f"{node}: {name}: spec {value!r}, running {setting!r}, but its configuration file now "
                           "says otherwise and waits for a restart")
    return out


def pending_restarts(views: Mapping[str, dict]) -> list[str]:
    """``views``: node -> its Patroni's ``GET /patroni``. A member Patroni reports ``pending_restart``,
    with the parameters and values of ``pending_restart_reason`` where it gives them."""
    out = []
    for node, view in views.items():
        if view.get("pending_restart"):
            reason = view.get("pending_restart_reason") or {}
            what = ", ".join(f"{name} {d.get('old_value')!r} -> {d.get('new_value')!r}" for name, d in reason.items())
            out.append(f"{node} waits for a restart to apply {what or 'a change (Patroni names none)'}")
    return out


def version_differences(spec: StackSpec, views: Mapping[str, dict], server_version_num: Mapping[str, int]) -> list[str]:
    """``views``: node -> ``GET /patroni``; ``server_version_num``: node -> PostgreSQL's
    ``server_version_num`` there. Patroni's version must be the spec's exactly, PostgreSQL's major
    version ``server_version_num // 10000`` the spec's ``postgres.version``."""
    out = []
    for node, view in views.items():
        patroni = view.get("patroni", {}).get("version")
        if patroni != spec.patroni.version:
            out.append(f"{node}: Patroni: spec {spec.patroni.version}, running {patroni}")
    for node, number in server_version_num.items():
        if number // 10000 != spec.postgres.version:
            out.append(f"{node}: PostgreSQL: spec {spec.postgres.version}, running {number // 10000} "
                       f"(server_version_num {number})")
    return out
