"""Patroni as it reports itself: the dynamic configuration in the DCS equals the spec for every key
the spec sets, and every node's own view agrees on the cluster it belongs to."""

from __future__ import annotations

import pytest

from deployer import patroni

pytestmark = pytest.mark.acceptance


def expected_config(spec) -> dict:
    """The keys of Patroni's dynamic configuration that the spec sets, with the spec's values
    (PostgreSQL's settings as ``spec.postgres_settings()`` gives them, the strings the role writes)."""
    p = spec.patroni
    return {"ttl": p.ttl, "loop_wait": p.loop_wait, "retry_timeout": p.retry_timeout,
            "maximum_lag_on_failover": p.maximum_lag_on_failover, "synchronous_mode": p.synchronous_mode,
            "failsafe_mode": p.failsafe_mode,
            **{f"postgresql.parameters.{name}": value for name, value in spec.postgres_settings().items()}}


def flattened(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flattened(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_dynamic_configuration_equals_the_spec_on_every_node(stack):
    """``GET /config`` (what the DCS holds), asked of each node: every key the spec sets, as set."""
    expected = expected_config(stack.spec)
    for node in stack.spec.nodes:
        seen = flattened(patroni.get(stack.target, node.name, "/config"))
        wrong = {k: (v, seen.get(k, "absent")) for k, v in expected.items() if seen.get(k, "absent") != v}
        assert not wrong, f"{node.name}: Patroni's dynamic configuration differs from the spec " + \
                          ", ".join(f"{k}: spec {v!r}, DCS {s!r}" for k, (v, s) in wrong.items())


def test_every_node_reports_the_same_cluster_running_the_spec_version(stack):
    """``GET /patroni``: one scope and one system identifier across nodes, the spec's Patroni version,
    every node running, and its role and timeline as the cluster view reports them."""
    members = {m.name: m for m in stack.cluster()}
    views = {n.name: patroni.get(stack.target, n.name, "/patroni") for n in stack.spec.nodes}
    scopes = {v["patroni"]["scope"] for v in views.values()}
    systems = {v["database_system_identifier"] for v in views.values()}
    assert scopes == {stack.spec.patroni.scope}, f"scopes {scopes}, the spec says {stack.spec.patroni.scope}"
    assert len(systems) == 1, f"nodes belong to different database systems: {systems}"
    for name, view in views.items():
        assert view["patroni"]["version"] == stack.spec.patroni.version, f"{name} runs Patroni {view['patroni']['version']}"
        assert view["state"] == "running", f"{name}: state {view['state']}"
        assert (view["role"] == "primary") == (members[name].role == "leader"), \
            f"{name} says it is {view['role']}, the cluster says {members[name].role}"
        assert view["timeline"] == members[name].timeline, f"{name}: timeline {view['timeline']} vs {members[name].timeline}"


def test_etcds_leader_is_on_another_node_than_patronis_leader(stack):
    """With ``etcd_leader_elsewhere``, the node etcd's members name as their leader is not Patroni's
    leader (within ``ETCD_LEADER_MOVE_S``): losing Patroni's leader then never costs an etcd election
    that renews its key's lease."""
    if not stack.spec.patroni.etcd_leader_elsewhere:
        pytest.skip("the spec lets etcd elect its leader anywhere (patroni.etcd_leader_elsewhere: false)")
    stack.etcd_leader_elsewhere()


def test_synchronous_mode_names_a_synchronous_standby_that_postgresql_confirms(stack):
    if not stack.spec.patroni.synchronous_mode:
        pytest.skip("the spec runs asynchronous replication (patroni.synchronous_mode: false)")
    leader = stack.leader()
    roles = {m["name"]: m["role"] for m in patroni.get(stack.target, leader.name, "/cluster")["members"]}
    sync = [name for name, role in roles.items() if role == "sync_standby"]
    assert sync, f"synchronous_mode is on but Patroni lists no sync_standby: {roles}"
    states = dict(stack.psql(leader.name, "SELECT application_name, sync_state FROM pg_stat_replication"))
    assert all(states.get(name) in ("sync", "quorum") for name in sync), \
        f"Patroni's sync standbys {sync}, pg_stat_replication on {leader.name} says {states}"
