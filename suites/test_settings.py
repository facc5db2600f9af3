"""What runs is what the spec says, read from every node: no member waits for a restart, every
PostgreSQL setting the spec sets (``StackSpec.postgres_settings()``) runs with the spec's value on
every node (``pg_settings``), and the packages the spec pins are the ones running. A changed spec is
applied only once all three hold (DCS == spec is ``test_patroni``'s; this is running == spec)."""

from __future__ import annotations

import pytest

from deployer import patroni
from deployer.settings_check import pending_restarts, setting_differences, settings_query, version_differences

pytestmark = pytest.mark.acceptance


def _views(stack) -> dict[str, dict]:
    return {n.name: patroni.get(stack.target, n.name, "/patroni") for n in stack.spec.nodes}


@pytest.mark.smoke
def test_no_member_waits_for_a_restart(stack):
    """``GET /patroni`` of every node: none reports ``pending_restart`` (a setting in its
    configuration that PostgreSQL applies only at its next start)."""
    pending = pending_restarts(_views(stack))
    assert not pending, "a changed setting is not applied yet: " + "; ".join(pending)


def test_every_node_runs_the_settings_the_spec_sets(stack):
    """``pg_settings`` on every node: each setting of ``spec.postgres_settings()`` runs with the
    spec's value (units in the base unit, as PostgreSQL reports them), none pending a restart."""
    expected = stack.spec.postgres_settings()
    running = {n.name: stack.psql(n.name, settings_query(expected)) for n in stack.spec.nodes}
    wrong = setting_differences(expected, running)
    assert not wrong, "running settings differ from the spec: " + "; ".join(wrong)


def test_every_node_runs_the_versions_the_spec_pins(stack):
    """Patroni's version (``GET /patroni``) and PostgreSQL's major version (``server_version_num``)
    on every node are the spec's."""
    numbers = {n.name: int(stack.psql(n.name, "SHOW server_version_num")[0][0]) for n in stack.spec.nodes}
    wrong = version_differences(stack.spec, _views(stack), numbers)
    assert not wrong, "running versions differ from the spec: " + "; ".join(wrong)
