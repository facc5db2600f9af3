"""The spec model: the shipped stack.yaml is valid; bad input is refused naming the field."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from deployer.budgets import Budgets
from deployer.spec import (DEFAULT_SPEC, HAProxy, SpecError, admits_internet, check_for_target, check_stack_name, load_spec,
                           parse_spec)

RAW = yaml.safe_load(DEFAULT_SPEC.read_text())
PROFILES = Path(__file__).parents[1] / "deployer" / "profiles"


def changed(path: str, value):
    """A copy of the shipped spec with one dotted path set (``None`` deletes it)."""
    raw = copy.deepcopy(RAW)
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(last)] = value
    elif value is None:
        node.pop(last)
    else:
        node[last] = value
    return raw


def test_shipped_spec_is_valid():
    spec = load_spec()
    assert [n.name for n in spec.nodes] == ["pg1", "pg2", "pg3"]
    assert spec.rule_ports(spec.security_rules[0]) == [spec.ports.haproxy_primary, spec.ports.haproxy_replicas]
    assert spec.network.gateway.exploded == "10.0.1.1"


def test_failover_budget_comes_from_patroni_and_health_checks():
    spec = load_spec()
    expected = (spec.patroni.ttl + spec.patroni.loop_wait
                + (spec.haproxy.check_inter_ms + spec.haproxy.fastinter_ms * (spec.haproxy.check_fall - 1)) / 1000
                + spec.load_balancer.probe_interval_s * spec.load_balancer.probe_threshold)
    assert Budgets(spec).crash_failover_s == expected


def test_budgets_move_with_the_spec():
    raw = copy.deepcopy(RAW)
    raw["patroni"].update(ttl=30, loop_wait=10, retry_timeout=10)
    raw["load_balancer"]["probe_interval_s"] = 10
    slow, fast = Budgets(parse_spec(raw)), Budgets(load_spec())
    assert slow.crash_failover_s - fast.crash_failover_s == pytest.approx(10 + 5 + 5 * 2)
    assert slow.switchover_s - fast.switchover_s == pytest.approx(5)
    assert slow.lb_settle_s - fast.lb_settle_s == 5 * 3
    assert Budgets(load_spec(), readback_latency_s=10).lb_settle_s == fast.lb_settle_s + 20


@pytest.mark.parametrize("path, value, message", [
    ("colour", "blue", "colour: unknown key"),
    ("patroni.ttl_seconds", 30, "patroni.ttl_seconds: unknown key"),
    ("network.subnet_cidr", "10.0.1.0/33", "network.subnet_cidr"),
    ("network.subnet_cidr", "10.0.1.7/24", "network.subnet_cidr"),
    ("network.subnet_cidr", "10.9.0.0/24", "not inside vnet_cidr"),
    ("nodes", [{"name": "a", "address": "10.0.1.4"}, {"name": "b", "address": "10.0.1.5"}], "at least 3"),
    ("nodes", [{"name": f"n{i}", "address": f"10.0.1.{4 + i}"} for i in range(4)], "odd number"),
    ("nodes.1", {"name": "pg1", "address": "10.0.1.9"}, "duplicate node name: pg1"),
    ("nodes.2", {"name": "pg3", "address": "10.0.2.6"}, "nodes.2.address"),
    ("nodes.0", {"name": "pg1", "address": "10.0.1.1"}, "reserved"),
    ("ports.patroni", 5432, "ports.patroni (5432) clashes with ports.postgres"),
    ("patroni.ttl", 10, "patroni.ttl"),
    ("patroni.loop_wait", 15, "ttl (20) must be at least"),
    ("security_rules.0.source", "everyone", "neither a CIDR nor"),
    ("security_rules.0.ports", ["haproxy_primary", "mysql"], "unknown port name 'mysql'"),
    ("security_rules.1.priority", 110, "priority: 110 is already used"),
    ("azure.admin_cidr", "0.0.0.0/0", "azure.admin_cidr"),
    ("local.transit_cidr", "10.0.200.0/24", "overlaps network.vnet_cidr"),
])
def test_invalid_spec_is_refused_naming_the_field(path, value, message):
    with pytest.raises(SpecError) as err:
        parse_spec(changed(path, value))
    assert message in str(err.value)


@pytest.mark.parametrize("source", ["*", "Any", "Internet", "0.0.0.0/0"])
@pytest.mark.parametrize("port", ["postgres", "etcd_client", "patroni", "ssh", "etcd_peer"])
def test_rule_opening_a_protected_port_to_everyone_is_refused(source, port):
    raw = changed("security_rules.0", {"name": "oops", "priority": 160, "access": "allow",
                                         "source": source, "ports": [port]})
    with pytest.raises(SpecError, match=r"security_rules\.0 \(oops\): opens " + port):
        parse_spec(raw)


def test_open_rule_without_ports_opens_everything_and_is_refused():
    raw = changed("security_rules.0", {"name": "all", "priority": 160, "access": "allow", "protocol": "any",
                                         "source": "Internet", "ports": []})
    with pytest.raises(SpecError, match="opens etcd_client, etcd_peer, patroni, postgres, ssh"):
        parse_spec(raw)


def test_deny_from_everyone_and_allow_from_a_cidr_are_fine():
    raw = changed("security_rules.0", {"name": "office", "priority": 160, "access": "allow",
                                         "source": "192.0.2.0/28", "ports": ["postgres"]})
    assert parse_spec(raw).security_rules[0].source == "192.0.2.0/28"


def test_every_error_is_listed_at_once():
    raw = changed("colour", "blue")
    raw["ports"]["patroni"] = 5432
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert "colour" in str(err.value) and "ports" in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("nodes: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")


@pytest.mark.parametrize("name", ["Bad Name", "pg ha", "1pgha", "-x", "", "a" * 16, "pgha;rm"])
def test_bad_stack_names_are_refused(name):
    with pytest.raises(SpecError, match="is invalid"):
        check_stack_name(name)


def test_good_stack_names_pass():
    assert [check_stack_name(n) for n in ("pgha", "ci-42")] == ["pgha", "ci-42"]


@pytest.mark.parametrize("source", ["0.0.0.0/1", "0.0.0.0/4", "128.0.0.0/7"])
def test_a_source_admitting_most_of_the_internet_counts_as_open(source):
    rule = {"name": "wide", "priority": 200, "access": "allow", "source": source, "ports": ["postgres"]}
    raw = copy.deepcopy(RAW)
    raw["security_rules"].insert(0, rule)
    with pytest.raises(SpecError, match=f"opens postgres to '{re.escape(source)}'"):
        parse_spec(raw)


def test_a_private_range_is_not_the_internet():
    assert not admits_internet("10.0.0.0/8") and not admits_internet("VirtualNetwork")
    assert admits_internet("not 10.0.0.0/16") and admits_internet("Internet") and admits_internet("0.0.0.0/0")


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_booleans_accept_only_booleans(value):
    with pytest.raises(SpecError, match="patroni.synchronous_mode"):
        parse_spec(changed("patroni.synchronous_mode", value))


@pytest.mark.parametrize("path, value, message", [
    ("nodes.0.zone", "4", "nodes.0.zone"),
    ("azure.location", "West Europe", "azure.location"),
    ("azure.vm_size", "b2s", "azure.vm_size"),
    ("admin_user", "admin", "admin_user: Azure refuses 'admin'"),
])
def test_azure_only_fields_are_checked_when_the_target_is_azure(path, value, message):
    spec = parse_spec(changed(path, value))
    assert check_for_target(spec, "local") is spec, "the local target does not read these fields"
    with pytest.raises(SpecError, match=message):
        check_for_target(spec, "azure")


def test_azure_problems_are_listed_together_by_field():
    raw = changed("admin_user", "root")
    raw["nodes"][2]["zone"] = "9"
    raw["azure"]["location"] = "Nowhere"
    with pytest.raises(SpecError) as err:
        check_for_target(parse_spec(raw), "azure")
    assert str(err.value) == (
        "the spec is invalid for target azure:\n"
        "  nodes.2.zone: '9' is not an Azure availability zone (1, 2 or 3)\n"
        "  azure.location: 'Nowhere' is not an Azure region name (e.g. westeurope)\n"
        "  admin_user: Azure refuses 'root' as an administrator name")


def test_a_reported_cidr_with_host_bits_is_judged_by_its_length():
    assert admits_internet("1.2.3.4/1") and not admits_internet("10.1.2.3/8")


def test_rule_ports_take_names_and_numbers():
    raw = copy.deepcopy(RAW)
    raw["security_rules"][2]["ports"] = ["postgres", 6432, 5432]
    spec = parse_spec(raw)
    assert spec.rule_ports(spec.security_rules[2]) == [5432, 6432]


def test_the_stack_name_message_says_what_is_allowed():
    with pytest.raises(SpecError) as err:
        check_stack_name("Bad")
    assert str(err.value) == ("stack name 'Bad' is invalid: use 1-15 lower-case letters, digits and '-', "
                              "starting with a letter")


def test_node_finds_by_name_and_names_the_known_ones():
    spec = load_spec()
    assert str(spec.node("pg2").address) == "10.0.1.5"
    with pytest.raises(KeyError, match=r"no node 'pg9' in the spec \(nodes: pg1, pg2, pg3\)"):
        spec.node("pg9")


def test_a_spec_that_is_not_a_mapping_is_refused(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n")
    with pytest.raises(SpecError, match=f"^{re.escape(str(bad))}: the top level must be a mapping$"):
        load_spec(bad)
    bad.write_text("name: pgha\n")
    with pytest.raises(SpecError, match=f"^{re.escape(str(bad))} is invalid:\n  network: Field required\n  nodes"):
        load_spec(bad)


def test_the_shipped_profiles_extend_stack_yaml_and_change_only_what_they_say():
    base = load_spec()
    defaults = load_spec(PROFILES / "patroni-defaults.yaml")
    sync = load_spec(PROFILES / "tuned-sync.yaml")
    assert (defaults.profile, defaults.patroni.ttl, defaults.patroni.loop_wait, defaults.patroni.retry_timeout) == \
        ("patroni-defaults", 30, 10, 10)
    assert (sync.profile, sync.patroni.synchronous_mode, sync.patroni.failsafe_mode) == ("tuned-sync", True, True)
    assert sync.nodes == base.nodes and sync.security_rules == base.security_rules  # lists come from the base
    assert defaults.model_copy(update={"profile": "default", "patroni": base.patroni}) == base


def test_a_profile_merges_mappings_key_by_key_and_replaces_lists(tmp_path):
    (tmp_path / "base.yaml").write_text(DEFAULT_SPEC.read_text())
    (tmp_path / "p.yaml").write_text("extends: base.yaml\nprofile: p\npatroni: {ttl: 40}\n"
                                     "nodes: [{name: a1, address: 10.0.1.7}, {name: a2, address: 10.0.1.8},"
                                     " {name: a3, address: 10.0.1.9}]\n")
    spec = load_spec(tmp_path / "p.yaml")
    assert spec.patroni.ttl == 40 and spec.patroni.loop_wait == load_spec().patroni.loop_wait
    assert [n.name for n in spec.nodes] == ["a1", "a2", "a3"]


def test_a_profile_that_extends_itself_or_nothing_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(SpecError, match="extends itself"):
        load_spec(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(SpecError, match="missing.yaml does not exist"):
        load_spec(tmp_path / "c.yaml")


def test_a_profile_is_validated_like_any_spec(tmp_path):
    (tmp_path / "p.yaml").write_text(f"extends: {DEFAULT_SPEC}\npatroni: {{failsafe_mode: 'yes'}}\n")
    with pytest.raises(SpecError, match="patroni.failsafe_mode"):
        load_spec(tmp_path / "p.yaml")


def test_drill_budgets_follow_the_spec():
    b = Budgets(load_spec())
    p, h = b.spec.patroni, b.spec.haproxy
    assert b.postmaster_restart_s == p.loop_wait + 4 + h.up_s + 2
    assert b.switchover_s == p.loop_wait + h.down_s + h.up_s + 2
    assert b.member_loss_s == 2 + b.haproxy_down_s
    assert b.demote_s == p.loop_wait + p.retry_timeout + 2
    assert b.quorum_recovery_s == p.ttl + p.loop_wait + b.haproxy_reroute_s + b.lb_settle_s
    assert b.cluster_restart_s == 30 + b.quorum_recovery_s
    sync = Budgets(load_spec(PROFILES / "tuned-sync.yaml"))
    assert sync.member_loss_s == b.member_loss_s + p.wal_sender_timeout_ms / 1000 + p.loop_wait


@pytest.mark.parametrize("haproxy, down_s, up_s", [
    ({}, 2.0, 1.0),  # HAProxy's defaults: fastinter and downinter are inter
    ({"check_fastinter_ms": 200, "check_downinter_ms": 200}, 1.2, 0.2),
    ({"check_fastinter_ms": 200, "check_downinter_ms": 100, "check_fall": 3, "check_rise": 2}, 1.4, 0.3),
])
def test_haproxy_transitions_follow_inter_fastinter_and_downinter(haproxy, down_s, up_s):
    h = HAProxy(**haproxy)
    assert (h.down_s, h.up_s) == pytest.approx((down_s, up_s))


def test_postgres_settings_are_every_setting_the_spec_sets_as_postgresql_reports_it():
    assert load_spec().postgres_settings() == {"max_connections": "100", "wal_sender_timeout": "10000",
                                               "archive_mode": "on", "archive_timeout": "60",
                                               "archive_command": "/usr/local/bin/pgbackrest-archive-push pgha %p"}
    raw = changed("postgres.parameters", {"shared_buffers": "256MB", "timezone": "UTC", "fsync": True,
                                          "checkpoint_timeout": "5min", "synchronous_commit": "Local"})
    raw["postgres"]["max_connections"] = 150
    raw["patroni"]["wal_sender_timeout_ms"] = 7000
    raw["backup"] = {"enabled": False}
    spec = parse_spec(raw)
    assert spec.postgres.parameters["TimeZone"] == "UTC", "kept under the name PostgreSQL spells"
    assert spec.postgres_settings() == {"max_connections": "150", "wal_sender_timeout": "7000",
                                        "shared_buffers": "32768", "TimeZone": "UTC", "fsync": "on",
                                        "checkpoint_timeout": "300", "synchronous_commit": "local"}


@pytest.mark.parametrize("parameters, message", [
    ({"no_such_thing": 1}, "postgres.parameters.no_such_thing: 'no_such_thing' is not a PostgreSQL 15 parameter"),
    ({"shared_buffers": "1"}, "postgres.parameters.shared_buffers: expected an integer in 16 .. 1073741823"),
    ({"shared_buffers": "128mb"}, "'mb' is not one of TB, GB, MB, kB, B"),
    ({"fsync": "maybe"}, "postgres.parameters.fsync: expected a boolean"),
    ({"synchronous_commit": "sometimes"}, "postgres.parameters.synchronous_commit: expected one of local"),
    ({"checkpoint_completion_target": 1.5}, r"checkpoint_completion_target: expected a number in 0 .. 1"),
    ({"server_version": "16"}, "postgres.parameters.server_version: PostgreSQL does not accept it in a configuration file"),
    ({"transaction_isolation": "serializable"}, "does not accept it in a configuration file (context user)"),
    ({"max_connections": 200}, "postgres.parameters.max_connections: not settable here: set it with postgres.max_connections"),
    ({"WAL_SENDER_TIMEOUT": "5s"}, "set it with patroni.wal_sender_timeout_ms"),
    ({"hba_file": "/etc/hba"}, "postgres.parameters.hba_file: not settable here: Patroni's local configuration"),
    ({"data_directory": "/srv"}, "data_directory: not settable here"),
    ({"listen_addresses": "*"}, "listen_addresses: not settable here"),
    ({"port": 5433}, "Patroni sets it from ports.postgres"),
    ({"hot_standby": "off"}, "Patroni keeps it on"),
    ({"wal_log_hints": "off"}, "pg_rewind"),
    ({"primary_conninfo": "host=x"}, "Patroni writes the recovery settings itself"),
    ({"synchronous_standby_names": "*"}, "patroni.synchronous_mode"),
    ({"wal_level": "minimal"}, "postgres.parameters.wal_level: replication needs replica or logical, seen 'minimal'"),
    ({"max_wal_senders": 2}, "postgres.parameters.max_wal_senders: Patroni ignores a value below 3"),
    ({"wal_keep_size": "8MB"}, "Patroni ignores a value below 16MB"),
    ({"TimeZone": "UTC", "timezone": "GMT"}, "postgres.parameters.timezone: TimeZone is given twice"),
    ({"search_path": ["a", "b"]}, "postgres.parameters.search_path: expected a string, seen list"),
])
def test_a_parameter_postgresql_or_patroni_would_refuse_or_ignore_is_refused_naming_it(parameters, message):
    with pytest.raises(SpecError) as err:
        parse_spec(changed("postgres.parameters", parameters))
    assert message in str(err.value)


def test_every_bad_parameter_is_listed_at_once():
    with pytest.raises(SpecError) as err:
        parse_spec(changed("postgres.parameters", {"fsync": "maybe", "work_mem": "64kB", "port": 1, "nope": 0}))
    lines = str(err.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "postgres.parameters.fsync", "postgres.parameters.port", "postgres.parameters.nope"]


@pytest.mark.parametrize("value, message", [(24, "greater than or equal to 25"), (300000, "1 .. 262143")])
def test_max_connections_within_what_patroni_and_postgresql_accept(value, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(changed("postgres.max_connections", value))


def test_admits_tells_the_network_from_the_subnet():
    """``Subnet`` admits the cluster's subnet only; ``VirtualNetwork`` every host of the network."""
    spec = load_spec()
    ports = spec.ports
    assert spec.admits("VirtualNetwork", "10.0.1.5", ports.etcd_client)
    assert not spec.admits("VirtualNetwork", "10.0.255.254", ports.etcd_client), "a neighbour reaches etcd"
    assert spec.admits("VirtualNetwork", "10.0.255.254", ports.patroni)
    assert not spec.admits("Internet", "192.0.2.1", ports.patroni)
