"""The failover verdict (``deployer.failover_readiness``) over Patroni 4.1's answers of the local
stack (``fixtures/patroni_failover.json``: ``/cluster``, ``/config`` and each ``/patroni``, read live
healthy and under each seeded defect of its guard), and over the healthy answers changed the way
other defects would change them: silent on the healthy stack, naming every reason when a member or
the failover is ruled out, with negative controls where Patroni's rules keep a member a candidate."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from deployer.defects import BY_NAME
from deployer.failover_readiness import readiness, watchdog_problems

LIVE = json.loads((Path(__file__).parent / "fixtures" / "patroni_failover.json").read_text())
HEALTHY = LIVE["healthy"]
NODES = ["pg1", "pg2", "pg3"]
MIB = 1048576


def stack(members=None, config=None, statuses=None, cluster=None):
    """The healthy answers with ``members``: name -> keys to set in its ``/cluster`` entry,
    ``config``: keys of ``/config``, ``statuses``: name -> keys of its ``/patroni`` (None: no answer)."""
    data = copy.deepcopy(HEALTHY)
    for member in data["cluster"]["members"]:
        member.update((members or {}).get(member["name"], {}))
    data["cluster"].update(cluster or {})
    data["config"].update(config or {})
    views = data["patroni"]
    for name, change in (statuses or {}).items():
        views[name] = None if change is None else {**views[name], **change}
    return readiness(NODES, data["cluster"], data["config"], views)


def test_the_healthy_stack_would_fail_over_to_either_replica():
    verdict = stack()
    assert verdict.problems == [] and verdict.leader == "pg1"
    assert verdict.candidates == ("pg2", "pg3") and verdict.promoted == ("pg2", "pg3")
    assert str(verdict) == "leader pg1: a failover now would promote pg2 or pg3 (candidates: pg2, pg3)"


@pytest.mark.parametrize("defect", sorted(set(LIVE) - {"healthy"}))
def test_each_seeded_defect_as_patroni_reported_it_fails_naming_the_defects_evidence(defect):
    seen = LIVE[defect]
    verdict = readiness(NODES, seen["cluster"], seen["config"], seen["patroni"])
    assert verdict.problems and BY_NAME[defect].evidence in str(verdict), str(verdict)


@pytest.mark.parametrize(("tags", "named"), [
    ({"failover_priority": 0}, "tag failover_priority: 0 (<= 0)"),
    ({"failover_priority": "-1"}, "tag failover_priority: -1 (<= 0)"),
    ({"nofailover": True}, "tag nofailover: True"),
    ({"nofailover": True, "failover_priority": 5}, "tag nofailover: True"),  # the bool tag decides
])
def test_a_tag_that_forbids_promotion_rules_the_replica_out_naming_the_tag(tags, named):
    verdict = stack(members={"pg3": {"tags": tags}})
    assert verdict.problems == [f"pg3 is ruled out: {named}: Patroni never promotes it"]
    assert verdict.candidates == ("pg2",) and not verdict.blockers


@pytest.mark.parametrize("tags", [
    {"nofailover": False, "failover_priority": 0},  # Patroni: nofailover wins (a warning), it stays a candidate
    {"failover_priority": 2}, {"noloadbalance": True}, {"clonefrom": True}, {"replicatefrom": "pg2"},
    {"nosync": True},  # asynchronous: nosync is no reason
])
def test_a_tag_patroni_does_not_exclude_on_leaves_the_replica_a_candidate(tags):
    assert stack(members={"pg3": {"tags": tags}}).candidates == ("pg2", "pg3")


def test_a_tag_reloaded_but_not_yet_in_the_dcs_rules_the_replica_out_from_its_own_answer():
    verdict = stack(statuses={"pg2": {"tags": {"failover_priority": 0}}})
    assert verdict.problems == ["pg2 is ruled out: tag failover_priority: 0 (<= 0) (live, GET /patroni): "
                                "Patroni never promotes it"]


def test_a_replica_lagging_past_maximum_lag_on_failover_is_ruled_out_naming_both_figures():
    verdict = stack(members={"pg2": {"lag": 5 * MIB, "receive_lag": 5 * MIB, "replay_lag": 5 * MIB}})
    assert verdict.problems == ["pg2 is ruled out: lag 5.0 MiB (5242880 bytes) past maximum_lag_on_failover "
                                "1.0 MiB (1048576 bytes): Patroni promotes no replica further behind"]
    assert verdict.promoted == ("pg3",)


def test_lag_is_judged_against_the_dcs_limit_and_patronis_strict_inequality():
    assert stack(members={"pg2": {"lag": MIB, "replay_lag": MIB}}).problems == []
    assert stack(members={"pg2": {"lag": 3 * MIB}}, config={"maximum_lag_on_failover": 4 * MIB}).problems == []
    assert "past maximum_lag_on_failover 0.0 MiB" in stack(members={"pg2": {"lag": 1}},
                                                           config={"maximum_lag_on_failover": 0}).problems[0]


def test_an_unknown_wal_position_counts_as_lagging():
    verdict = stack(members={"pg3": {"lag": "unknown", "lsn": "unknown"}})
    assert verdict.problems == ["pg3 is ruled out: lag 'unknown': Patroni counts a member without a WAL position "
                                "as lagging"]


def test_a_replica_whose_replay_lags_is_ruled_out_though_it_received_everything():
    verdict = stack(members={"pg3": {"replay_lag": 3 * MIB}}, statuses={"pg3": {"xlog": {"paused": True}}})
    assert verdict.problems == ["pg3 is ruled out: replay lag 3.0 MiB (3145728 bytes) (its replay is paused) past "
                                "maximum_lag_on_failover 1.0 MiB (1048576 bytes): a promotion must replay it all first"]


@pytest.mark.parametrize("state", ["in archive recovery", "stopped", "starting", "running"])
def test_a_replica_that_does_not_stream_is_ruled_out_naming_its_state(state):
    assert stack(members={"pg2": {"state": state}}).problems == [
        f"pg2 is ruled out: state {state!r}, not streaming from the leader"]


def test_a_timeline_behind_the_clusters_rules_out_only_under_check_timeline():
    behind = {"pg3": {"timeline": 0}}
    assert stack(members=behind).problems == ["pg3 is ruled out: timeline 0 behind the cluster's 1 (check_timeline)"]
    assert stack(members=behind, config={"check_timeline": False}).problems == []


def test_an_unusable_watchdog_or_a_silent_rest_api_rules_the_replica_out():
    assert stack(statuses={"pg2": {"watchdog_failed": True}}).problems == [
        "pg2 is ruled out: its watchdog is required but not usable (watchdog_failed): Patroni never promotes it"]
    assert stack(statuses={"pg3": None}).problems == [
        "pg3 is ruled out: its Patroni REST API does not answer (Patroni skips a member it cannot ask)"]


def test_a_node_of_the_spec_that_is_no_member_is_ruled_out():
    data = copy.deepcopy(HEALTHY)
    data["cluster"]["members"] = data["cluster"]["members"][:2]
    verdict = readiness(NODES, data["cluster"], data["config"], data["patroni"])
    assert verdict.problems == ["pg3 is ruled out: not a member of the cluster (no member key in the DCS: its Patroni "
                                "is not running)"]


@pytest.mark.parametrize(("where", "change"), [("cluster", {"pause": True}), ("config", {"pause": True}),
                                               ("config", {"pause": "on"})])
def test_a_paused_cluster_fails_over_to_nobody(where, change):
    verdict = stack(**{where: change})
    assert verdict.blockers == ("the cluster is paused (maintenance mode): Patroni fails over by itself no more",)
    assert verdict.promoted == () and "no failover would happen now" in str(verdict)
    assert stack(config={"pause": False}).problems == []


def test_without_a_leader_or_without_a_replica_there_is_no_failover():
    assert stack(members={"pg1": {"role": "replica", "state": "streaming", "lag": 0}}).blockers == (
        "Patroni reports 0 leaders (none), not one",)
    data = copy.deepcopy(HEALTHY)
    data["cluster"]["members"] = data["cluster"]["members"][:1]
    assert readiness(["pg1"], data["cluster"], data["config"], data["patroni"]).blockers == (
        "no replica: nothing to fail over to",)


def test_when_every_replica_is_ruled_out_failover_is_too_with_each_reason():
    verdict = stack(members={"pg2": {"tags": {"nofailover": True}}, "pg3": {"lag": 9 * MIB}})
    assert verdict.blockers == ("no replica qualifies",) and verdict.candidates == ()
    assert [p.split(":")[0] for p in verdict.problems] == ["no replica qualifies", "pg2 is ruled out",
                                                          "pg3 is ruled out"]


def test_patroni_promotes_the_replica_furthest_ahead_then_the_highest_failover_priority():
    assert stack(members={"pg2": {"lag": 4096}}).promoted == ("pg3",)
    assert stack(members={"pg2": {"tags": {"failover_priority": 3}}}).promoted == ("pg2",)


SYNC = {"synchronous_mode": True}


def test_under_synchronous_mode_only_the_synchronous_standby_is_a_candidate():
    verdict = stack(members={"pg2": {"role": "sync_standby"}}, config=SYNC)
    assert verdict.problems == [] and verdict.candidates == ("pg2",) and verdict.not_synchronous == ("pg3",)
    assert "qualify but are not synchronous standbys: pg3" in str(verdict)
    quorum = stack(members={"pg2": {"role": "quorum_standby"}, "pg3": {"role": "quorum_standby"}},
                   config={"synchronous_mode": "quorum"})
    assert quorum.problems == [] and quorum.candidates == ("pg2", "pg3")


@pytest.mark.parametrize("tags", [{"nosync": True}, {"sync_priority": 0}])
def test_nosync_on_every_synchronous_candidate_leaves_synchronous_mode_nobody_to_promote(tags):
    verdict = stack(members={"pg2": {"tags": tags}, "pg3": {"tags": tags}}, config={"synchronous_mode": "on"})
    assert verdict.blockers == ("synchronous_mode is on and Patroni names no synchronous standby (/sync): it "
                                "promotes none",)
    tag = next(f"tag {k}: {v}" for k, v in tags.items())
    assert all(tag in " ".join(verdict.excluded[n]) and "never a synchronous standby" in " ".join(verdict.excluded[n])
               for n in ("pg2", "pg3"))


def test_nosync_on_one_replica_under_synchronous_mode_rules_it_out_while_the_other_is_the_standby():
    verdict = stack(members={"pg2": {"role": "sync_standby"}, "pg3": {"tags": {"nosync": True}}}, config=SYNC)
    assert verdict.candidates == ("pg2",) and verdict.problems == [
        "pg3 is ruled out: tag nosync: True: never a synchronous standby, and under synchronous mode Patroni "
        "promotes only one"]


def test_a_standby_cluster_runs_no_synchronous_mode():
    assert stack(config={**SYNC, "standby_cluster": {"host": "10.9.9.9"}}).problems == []


LEADER_VIEW = HEALTHY["patroni"]["pg1"]
PATRONI = "/opt/patroni/bin/python3 /opt/patroni/bin/patroni /etc/patroni/patroni.yml"


def test_the_watchdog_is_armed_when_patroni_holds_the_device_and_reports_no_failure():
    assert watchdog_problems("pg1", LEADER_VIEW, [PATRONI]) == []


@pytest.mark.parametrize(("view", "holders", "named"), [
    ({**LEADER_VIEW, "watchdog_failed": True}, [PATRONI], "reports its watchdog failed (watchdog_failed)"),
    (LEADER_VIEW, [], "no Patroni process on pg1 holds the watchdog device open (holders: none)"),
    (LEADER_VIEW, ["/usr/sbin/watchdog"], "holds the watchdog device open (holders: ['/usr/sbin/watchdog'])"),
])
def test_a_watchdog_not_armed_by_patroni_is_named(view, holders, named):
    problems = watchdog_problems("pg1", view, holders)
    assert len(problems) == 1 and named in problems[0]
