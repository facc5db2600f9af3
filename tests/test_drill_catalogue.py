"""The drill machinery without a stack: every catalogue entry is complete and its budget comes from
the spec; each fault heals, also when the body fails; the observers' event reading is exact."""

from __future__ import annotations

import contextlib

import pytest

import deployer.state
from deployer.budgets import Budgets
from deployer.drills import changes, holds, nemesis
from deployer.drills.catalogue import CATALOGUE
from deployer.drills.observer import Observations
from deployer.spec import load_spec
from deployer.state import StackState
from deployer.targets.base import CAPABILITIES, TargetError

SPEC = load_spec()

ISSUE_FAULTS = {"kill-postmaster", "kill-patroni", "freeze-patroni", "crash-primary-vm", "isolate-primary",
                "isolate-replica", "stop-etcd-member", "etcd-quorum-loss", "switchover", "cluster-restart",
                # day two: one change per class the plan applies without a replace
                "change-reload", "change-rolling-restart", "change-haproxy", "change-patroni-version",
                "change-backup-archive-timeout", "change-scale-out-in", "change-rotate-certs",
                # backups (issue 18): the archive across failover, a replica from the repository, a backup
                # caught by a switchover
                "backup-archive-after-switchover", "backup-archive-after-crash", "backup-replica-rebuilt",
                "backup-during-switchover"}


def test_the_catalogue_holds_every_fault_once_each_with_a_budget_and_an_expectation():
    assert {d.name for d in CATALOGUE} == ISSUE_FAULTS and len(CATALOGUE) == len(ISSUE_FAULTS)
    budgets = Budgets(SPEC)
    for drill in CATALOGUE:
        assert 0 < drill.budget(budgets) < 120, drill.name
        assert drill.expect.endswith(".") and len(drill.expect) > 40, drill.name
        assert drill.needs is None or drill.needs in CAPABILITIES, drill.name
        assert drill.hold in (holds.new_leader, holds.writes_flow, holds.another_sync_standby, holds.quorum_lost,
                              holds.nothing) or drill.name.startswith(("change-", "backup-")), drill.name


def test_faults_that_stop_writes_by_design_are_budgeted_from_the_heal():
    by_name = {d.name: d for d in CATALOGUE}
    assert {d.name for d in CATALOGUE if d.budget_from == "heal"} == {"etcd-quorum-loss", "cluster-restart"}
    assert by_name["kill-patroni"].keeps_postmaster and by_name["kill-postmaster"].leader_change is False
    assert by_name["isolate-replica"].victim == "replica"


def test_each_change_drill_is_classified_by_the_plan_as_its_class():
    """The change drills' overlays, merged over the spec as ``deployer up`` merges them, are each
    one change of the class the drill asserts (the plan would otherwise apply something else)."""
    from deployer import plan
    from deployer.spec import _merged, parse_spec

    raw = SPEC.model_dump(mode="json")
    for change in changes.CHANGES:
        found = plan.plan(SPEC, parse_spec(_merged(raw, change.overlay(SPEC))))
        assert {c.impact for c in found.changes} == {change.impact}, (change.name, found.lines())
    assert {c.impact for c in changes.CHANGES} == {"reload", "rolling restart", "in place", "add node"}


class FakeTarget:
    def __init__(self, fail_start: str | None = None):
        self.calls, self.fail_start = [], fail_start

    def wait_for_ssh(self, node):
        self.calls.append(("ssh", node))

    def crash_vm(self, node):
        self.calls.append(("crash", node))

    def start_vm(self, node):
        self.calls.append(("start", node))
        if node == self.fail_start:
            raise TargetError(f"{node} did not start")


@pytest.fixture(autouse=True)
def _state_root(tmp_path, monkeypatch):
    """Faults write the fault journal into the stack's state: a state dir of the test's own."""
    monkeypatch.setattr(deployer.state, "STATE_ROOT", tmp_path)


class FakeStack:
    spec = SPEC

    def __init__(self, target=None):
        self.target, self.commands = target or FakeTarget(), []
        self.state = StackState(name="fake", target="local", spec_path="stack.yaml")

    def ssh(self, node, command, **_):
        self.commands.append((node, " ".join(command)))


def test_a_signalled_patroni_is_continued_and_started_even_when_the_drill_fails():
    stack = FakeStack()
    with pytest.raises(RuntimeError), nemesis.signalled_patroni("STOP", then="CONT")(stack, "pg1"):
        raise RuntimeError("the hold timed out")
    assert [c for _, c in stack.commands] == [
        "sudo systemctl kill --kill-who=main -s STOP patroni", "sudo systemctl kill --kill-who=main -s CONT patroni",
        "sudo systemctl start patroni"]


def test_etcd_is_stopped_on_a_majority_starting_with_the_victim_and_started_on_all_of_them():
    stack = FakeStack()
    with nemesis.stopped_on_majority("etcd")(stack, "pg3"):
        pass
    assert stack.commands == [("pg3", "sudo systemctl stop etcd"), ("pg1", "sudo systemctl stop etcd"),
                              ("pg3", "sudo systemctl start etcd"), ("pg1", "sudo systemctl start etcd")]


def test_a_crashed_cluster_starts_every_vm_even_when_one_start_fails():
    stack = FakeStack(FakeTarget(fail_start="pg3"))
    with pytest.raises(TargetError, match="pg3 did not start"), nemesis.crashed_cluster(stack, "pg2"):
        pass
    assert stack.target.calls == [("crash", "pg2"), ("crash", "pg1"), ("crash", "pg3"),
                                  ("start", "pg3"), ("start", "pg1"), ("start", "pg2")]


def test_a_server_put_in_maintenance_on_one_node_is_enabled_again_even_when_the_test_fails():
    stack = FakeStack()
    stack.haproxy_admin = lambda node, command: stack.commands.append((node, command))
    with pytest.raises(RuntimeError), nemesis.server_in_maintenance("primary", "pg1")(stack, "pg2"):
        raise RuntimeError("the pool never changed")
    assert stack.commands == [("pg2", "disable server primary/pg1"), ("pg2", "enable server primary/pg1")]


def test_the_leader_key_gone_is_the_first_delete_after_the_fault():
    seen = Observations(leader_key=[(5.0, "DELETE", None), (6.0, "PUT", "pg1"), (12.0, "PUT", "pg1"),
                                    (13.0, "DELETE", None), (14.0, "PUT", "pg2")])
    assert seen.leader_key_gone(10.0) == 13.0 and seen.leader_key_gone(13.0) == 13.0
    assert seen.leader_key_gone(13.5) is None


def test_routed_waits_for_every_named_node_to_route_to_the_new_leader_alone():
    seen = Observations(routing=[(1.0, "pg2", ("pg1",)), (1.1, "pg3", ("pg1",)), (2.0, "pg2", ("pg2",)),
                                 (2.1, "pg3", ("pg1", "pg2")), (3.0, "pg3", ("pg2",)), (3.5, "pg1", ())])
    assert seen.routed(0.0, ["pg2", "pg3"], "pg2") == 3.0
    assert seen.routed(0.0, ["pg1", "pg2", "pg3"], "pg2") is None  # pg1 never routed to pg2
    assert seen.routed(3.2, ["pg2", "pg3"], "pg2") == 3.5  # the first look after ``after``
    assert seen.routed(0.0, ["pg2"], "pg2") == 2.0


def test_faults_are_context_managers_whose_heal_runs_on_exit():
    stack = FakeStack()
    fault = nemesis.killed_postmaster(stack, "pg1")
    assert isinstance(fault, contextlib.AbstractContextManager)
    with fault:
        assert len(stack.commands) == 1 and "kill -9" in stack.commands[0][1]
    assert stack.commands[-1] == ("pg1", "sudo systemctl start patroni")


def _verdicts(**bad):
    from types import SimpleNamespace as NS

    from deployer.drills.trial import Verdicts
    ok = {"sets": NS(valid=True, summary="set ok", unexpected=frozenset(), failed_present=frozenset(),
                     lost=frozenset(), lost_direct=frozenset()),
          "writer": NS(valid=True, summary="one primary"), "zombie": NS(valid=True, summary="no zombie"),
          "stale": NS(valid=True, summary="fresh reads"), "gap": NS(summary="gap"), "parts": NS(summary="parts"),
          "convergence": NS(valid=True, summary="converged")}
    for name, fields in bad.items():
        ok[name] = NS(**{**vars(ok[name]), **fields})
    return Verdicts(**ok)


def _judge(drill_name="crash-primary-vm", *, v=None, measured=10.0, budget=37.0, sync=False, guarded=False,
           new=("pg2", 2), postmaster=None):
    from deployer.drills.trial import judge
    from deployer.patroni import Member
    drill = next(d for d in CATALOGUE if d.name == drill_name)
    old = Member("pg1", "10.0.1.4", "leader", "running", 0, 1)
    return judge(drill, v or _verdicts(), measured=measured, measured_what="write gap", budget=budget, sync=sync,
                 guarded=guarded, old=old, new=Member(new[0], "", "leader", "running", 0, new[1]), postmaster=postmaster)


def test_a_clean_drill_passes_and_the_budget_is_inclusive():
    assert _judge() == [] and _judge(measured=37.0) == []
    assert _judge(measured=37.01) == ["write gap 37.0 s exceeds the budget 37 s (gap parts)"]


def test_lost_writes_and_a_zombie_fail_only_where_the_spec_promises_none():
    lossy = _verdicts(sets={"valid": False, "summary": "3 lost", "lost": frozenset({"k"})},
                      zombie={"valid": False, "summary": "zombie 4.7 s"}, stale={"valid": False, "summary": "stale"})
    assert _judge(v=lossy) == []  # asynchronous, no watchdog: reported, not failed
    assert _judge(v=lossy, sync=True) == ["3 lost", "zombie 4.7 s", "stale"]
    assert _judge(v=lossy, guarded=True) == [
        "zombie 4.7 s (the watchdog must end a frozen primary before its key expires)"]


def test_unexpected_rows_two_primaries_and_no_convergence_always_fail():
    v = _verdicts(sets={"summary": "1 unexpected", "unexpected": frozenset({"x"})},
                  writer={"valid": False, "summary": "two primaries"},
                  convergence={"valid": False, "summary": "never converged"})
    assert _judge(v=v) == ["two primaries", "never converged", "1 unexpected"]


def test_the_expected_leader_change_or_its_absence_is_checked():
    assert _judge(new=("pg1", 1)) == ["expected a new leader, pg1 leads again"]
    assert _judge("kill-postmaster", budget=8, measured=1, new=("pg1", 1)) == []
    assert _judge("kill-postmaster", budget=8, measured=1, new=("pg1", 2)) == [
        "expected pg1 to lead on timeline 1 throughout; now pg1 on timeline 2"]
    assert _judge("etcd-quorum-loss", new=("pg1", 1)) == [] and _judge("etcd-quorum-loss") == []


def test_a_restarted_postmaster_fails_the_drill_that_promises_it_is_kept():
    assert _judge("kill-patroni", new=("pg1", 1), postmaster=("t0", "t0")) == []
    assert _judge("kill-patroni", new=("pg1", 1), postmaster=("t0", "t1")) == [
        "PostgreSQL on pg1 was restarted (postmaster start t0 -> t1)"]


SHORT = "sequential-short-timeout"


def _seq(key, start, end, client, outcome="ok", error=None):
    from load.history import Op
    return Op("write", key, start, end, outcome, "10.0.1.4" if outcome == "ok" else None, error, 1, client)


#: At a kept connection to a member the load balancer no longer serves: the sequential client waits
#: out its 10 s operation timeout, the short-timeout one its 2 s; a Locust write at 6.0 stays apart.
BOTH = [_seq("s0", 4.0, 4.5, "sequential"), _seq("t0", 4.0, 4.5, SHORT), _seq("k", 5.5, 6.0, "locust"),
        _seq("s1", 5.0, 15.0, "sequential", "unknown", "TimeoutError: no answer within 10 s"),
        _seq("t1", 5.0, 7.0, SHORT, "unknown", "TimeoutError: no answer within 2 s"),
        _seq("t2", 7.0, 7.5, SHORT), _seq("s2", 15.0, 15.5, "sequential")]


def test_each_sequential_client_is_recorded_from_its_own_writes():
    from deployer.drills.trial import sequential_record
    record = sequential_record(BOTH, 5.0)
    assert list(record) == ["sequential_gap_s", "sequential", "sequential_short_timeout_gap_s",
                            "sequential_short_timeout"]
    assert (record["sequential_gap_s"], record["sequential_short_timeout_gap_s"]) == (11.0, 3.0)
    assert record["sequential"] == ("One sequential client: 11.00 s without an acknowledged write: 10.00 s in 1 "
                                    "timeout attempt(s), 0.50 s in 1 acknowledged attempt(s), 0.50 s between attempts.")
    assert record["sequential_short_timeout"].startswith("One sequential-short-timeout client: 3.00 s without")


def test_a_sequential_client_that_never_wrote_again_says_so_in_the_record():
    from deployer.drills.trial import sequential_record
    stuck = sequential_record([op for op in BOTH if op.key != "t2"], 5.0)
    assert stuck["sequential_short_timeout_gap_s"] == 11.0 and stuck["sequential_gap_s"] == 11.0
    assert "after the fault, until the end" in stuck["sequential_short_timeout"]
    assert "until the end" not in stuck["sequential"]
    absent = sequential_record([op for op in BOTH if op.client != SHORT], 5.0)
    assert absent["sequential_short_timeout"] == "No sequential-short-timeout writes in the history."


def test_the_drill_card_shows_both_sequential_clients():
    from deployer.drills.report import drill_card
    from deployer.drills.trial import sequential_record
    record = {"drill": "isolate-replica", "old_leader": "pg1", "new_leader": "pg1", "profile": "tuned",
              "synchronous_mode": False, "within_budget": True, "measured_s": 1.9, "budget_from": "fault",
              "budget_s": 8, "write_gap_s": 1.9, "gap_parts_s": {}, "converged_s": 3.0, "expect": "writes flow",
              "verdict": "pass", "locust_html": "/r/locust.html", "set": "set", "single_writer": "one",
              "zombie": "none", "stale_reads": "fresh", **sequential_record(BOTH, 5.0)}
    card = drill_card(record)
    assert "<li>One sequential client: 11.00 s" in card and "<li>One sequential-short-timeout client: 3.00 s" in card


def test_the_archive_timeout_change_holds_only_when_nodes_run_it_and_the_archive_keeps_its_promise(monkeypatch):
    """``changes.archiving_applied``: passes on the changed setting with a fresh archive; fails on a
    node still running the old archive_timeout, and on an archiver that fails or lags (negative controls)."""
    from deployer import backups
    from deployer.spec import _merged, parse_spec

    change = next(c for c in changes.CHANGES if c.name == "backup-archive-timeout")
    changed = parse_spec(_merged(SPEC.model_dump(mode="json"), change.overlay(SPEC)))
    now = 1_800_000_000.0

    class Stack:
        spec, old_on = SPEC, set()

        def leader(self):
            return type("M", (), {"name": "pg1"})()

        def psql(self, node, query):
            settings = (SPEC if node in self.old_on else changed).postgres_settings()
            return [[name, value, "f"] for name, value in settings.items()]

    def archiver(**changes_):
        return backups.Archiver(**{"last_archived_wal": "000000010000000000000009", "last_archived_at": now - 5,
                                   "failed_count": 0, "last_failed_wal": "", "last_failed_at": None, "now": now,
                                   **changes_})

    stack, seen = Stack(), {"archiver": archiver()}
    monkeypatch.setattr(backups, "read_archiver", lambda s, node: seen["archiver"])
    assert changes.archiving_applied(stack, changed) == []
    stack.old_on = {"pg2"}
    assert any("pg2: archive_timeout" in p for p in changes.archiving_applied(stack, changed))
    stack.old_on = set()
    late = now - changed.backup.archive_max_age_s - 1
    seen["archiver"] = archiver(ready=(("00000001000000000000000A.ready", late),))
    assert changes.archiving_applied(stack, changed), "a segment waiting longer than the new promise"
    seen["archiver"] = archiver(ready=(("00000001000000000000000A.ready", late + 2),))
    assert changes.archiving_applied(stack, changed) == [], "one within it"
    seen["archiver"] = archiver(failed_count=1, last_failed_wal="00000001000000000000000A", last_failed_at=now - 1)
    assert changes.archiving_applied(stack, changed), "a failure after the last success"
