"""``up`` skips a stage that is done and still valid, saying so, and runs it when its record is stale,
its live check fails or it is forced; a stage that runs makes every later one run. Exercised with a
fake target whose infrastructure, Patroni and pool answer as each test sets them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import deployer.state
from deployer import stages
from deployer.spec import load_spec
from deployer.state import StackState
from deployer.targets.base import HostAccess, PoolMember, Target, TargetError

SPEC = load_spec()


class Fake(Target):
    """A stack that is up, configured and attached until a test says otherwise."""

    name = "fake"
    running = True
    sshd = True
    scope = SPEC.patroni.scope
    healthy = True
    pending: list[str] = []
    faults_left: list[str] = []
    preflight = lambda self: None  # noqa: E731
    security_rules = leftovers = lambda self: []
    ansible_vars = lambda self: {}  # noqa: E731
    resolve_source = lambda self, source: (source,)  # noqa: E731
    frontend = lambda self: ("203.0.113.10", 5000)  # noqa: E731
    vantage = lambda self: []  # noqa: E731
    _probe_from_internet = _probe_from_node = lambda self, *a: {}  # noqa: E731

    def __init__(self, spec, state, ran):
        super().__init__(spec, state)
        self.ran = ran

    def provision(self):
        self.ran.append("provision")
        self.state.data["image"] = "/var/cache/pgha/images/abc"

    def attach(self):
        self.ran.append("attach")

    def teardown(self):
        self.ran.append("teardown")

    def is_up(self):
        return self.running

    def hosts(self):
        return [HostAccess(node=n.name, address=str(n.address), ssh_host=str(n.address), ssh_port=22, user="u",
                           key_file=Path("k"), known_hosts=Path("kh")) for n in self.spec.nodes]

    def backend_pool(self):
        return [PoolMember(node=n.name, address=str(n.address), healthy=self.healthy) for n in self.spec.nodes]


@pytest.fixture
def stack(tmp_path, monkeypatch):
    """A fake stack fully deployed once; ``ran`` lists the stages run since."""
    monkeypatch.setattr(deployer.state, "STATE_ROOT", tmp_path / "state")
    ran: list[str] = []
    target = Fake(SPEC, StackState(name="pgha", target="fake", spec_path="stack.yaml"), ran)
    monkeypatch.setattr(stages, "tcp", lambda host, port, timeout: {"reachable": target.sshd, "detail": "timed out"})
    monkeypatch.setattr(stages.patroni, "get", lambda t, node, path: {"state": "running", "patroni": {"scope": t.scope, "version": t.spec.patroni.version}})
    monkeypatch.setattr(stages, "run_playbook", lambda *a: ran.append("configure") or {"changed": 0, "changed_by_host": {}})
    monkeypatch.setattr(stages, "verify", lambda name: ran.append("verify") or {})
    monkeypatch.setattr(stages, "_pending", lambda t: list(t.pending))
    monkeypatch.setattr(stages, "check_nodes_answer", lambda t: None)
    monkeypatch.setattr(stages, "heal_leftovers", lambda state, t: [f"healed {f}" for f in t.faults_left])
    monkeypatch.setattr(stages, "_what_is_lost", lambda t: "the cluster")
    monkeypatch.setattr(stages.rolling, "restart_pending", lambda t, *a: [f"restarted {n}" for n in t.pending])
    monkeypatch.setattr(stages.rolling, "restart_outdated_patroni", lambda t, *a: [])
    stages.up(target.state, target)
    assert ran == ["provision", "configure", "attach", "verify"]
    ran.clear()
    return target


def test_a_second_up_until_attach_skips_every_stage_done_and_still_valid_saying_so(stack, caplog):
    with caplog.at_level(logging.INFO, "deployer"):
        stages.up(stack.state, stack, until="attach")
    assert stack.ran == []
    said = caplog.messages
    for stage, claim in (("Provision", "every VM runs and its sshd answers"),
                         ("Configure", "every node's Patroni answers, runs the spec's release and scope, and none "
                                       "is pending a restart"),
                         ("Attach", "the load balancer reports every node as a healthy member")):
        assert any(m.startswith(f"{stage}: done at ") and f"for this spec and still valid ({claim}); skipped. "
                   f"Pass --force {stage.lower()} to re-run it." in m for m in said), said


def test_verify_always_runs(stack):
    stages.up(stack.state, stack)
    assert stack.ran == ["verify"]


@pytest.mark.parametrize("broken, first", [
    (lambda t: setattr(t, "running", False), "provision"),
    (lambda t: setattr(t, "sshd", False), "provision"),
    (lambda t: setattr(t, "scope", "other"), "configure"),
    (lambda t: setattr(t, "healthy", False), "attach"),
], ids=["vm-not-running", "sshd-silent", "patroni-foreign-scope", "pool-unhealthy"])
def test_a_failing_live_check_runs_the_stage_and_every_later_one(stack, caplog, broken, first):
    """Negative control of the skip: what the stage built is broken, so the record alone is not enough."""
    broken(stack)
    with caplog.at_level(logging.INFO, "deployer"):
        stages.up(stack.state, stack, until="attach")
    assert stack.ran == list(stages.STAGES[stages.STAGES.index(first):3])
    assert any(m.startswith(f"{first.capitalize()}: done at ") and "for this spec, but " in m
               and m.endswith("; running it again.") for m in caplog.messages), caplog.messages


def test_a_changed_spec_runs_the_first_stage_that_consumes_it_and_the_later_ones(stack, caplog):
    stack.spec = SPEC.model_copy(update={"load_balancer": SPEC.load_balancer.model_copy(update={"probe_threshold": 3})})
    with caplog.at_level(logging.INFO, "deployer"):
        stages.up(stack.state, stack, until="attach")
    assert stack.ran == ["provision", "configure", "attach"]
    assert "Plan: 1 change(s): 1 in place." in caplog.messages


def test_a_spec_change_no_stage_consumes_runs_nothing(stack):
    stack.spec = SPEC.model_copy(update={"workload": SPEC.workload.model_copy(update={"steady_s": 3})})
    stages.up(stack.state, stack, until="attach")
    assert stack.ran == []


def test_a_member_pending_a_restart_runs_configure_and_its_rolling_restart(stack, caplog):
    stack.pending = ["pg2"]
    with caplog.at_level(logging.INFO, "deployer"):
        stages.up(stack.state, stack, until="attach")
    assert stack.ran == ["configure", "attach"]
    assert stack.state.stages["configure"].facts["restarts"] == ["restarted pg2"]
    assert any("Configure: done at " in m and "but Patroni reports pg2 pending a restart" in m for m in caplog.messages)


def test_a_replace_is_refused_before_anything_changes_and_done_only_when_asked(stack):
    stack.spec = SPEC.model_copy(update={"admin_user": "someoneelse"})
    with pytest.raises(TargetError, match=r"admin_user: 'pgadmin' -> 'someoneelse' forces replacement"):
        stages.up(stack.state, stack, until="attach")
    assert stack.ran == [], "nothing ran, nothing was torn down"
    stages.up(stack.state, stack, until="attach", replace=True)
    assert stack.ran == ["teardown", "provision", "configure", "attach"]


def test_a_changed_ansible_tree_or_image_runs_configure_and_attach_not_provision(stack, tmp_path, monkeypatch):
    roles = tmp_path / "ansible"
    (roles / "roles").mkdir(parents=True)
    (roles / "site.yml").write_text("- hosts: all\n")
    monkeypatch.setattr(stages, "CONFIGURE_SOURCES", (roles,))
    monkeypatch.setattr(stages, "REPO", tmp_path)
    stages.up(stack.state, stack, until="attach")
    assert stack.ran == ["configure", "attach"], "a new ansible/ tree invalidates configure"
    stack.ran.clear()
    stages.up(stack.state, stack, until="attach")
    assert stack.ran == [], "unchanged again: skipped"
    (roles / ".cache").mkdir()
    (roles / ".cache" / "x").write_text("lint cache")
    stages.up(stack.state, stack, until="attach")
    assert stack.ran == [], "hidden files are no source"
    stack.state.data["image"] = "/var/cache/pgha/images/def"
    stages.up(stack.state, stack, until="attach")
    assert stack.ran == ["configure", "attach"], "a new VM image invalidates configure"


def test_a_record_without_a_fingerprint_is_not_valid(stack, caplog):
    stack.state.stages["configure"].fingerprint = None
    with caplog.at_level(logging.INFO, "deployer"):
        stages.up(stack.state, stack, until="configure")
    assert stack.ran == ["configure"]
    assert any("has no fingerprint (an older deployer); running it again." in m for m in caplog.messages)


def test_force_reruns_the_stage_and_the_later_ones_only(stack):
    stages.up(stack.state, stack, until="attach", force=["configure"])
    assert stack.ran == ["configure", "attach"]
    stack.ran.clear()
    stages.up(stack.state, stack, until="attach", force=["all"])
    assert stack.ran == ["provision", "configure", "attach"]


def test_force_beyond_until_is_refused(stack):
    with pytest.raises(TargetError, match="--force verify: after --until attach"):
        stages.up(stack.state, stack, until="attach", force=["verify"])


def test_a_failed_stage_runs_again(stack):
    stack.state.record("configure", ok=False, seconds=1, error="boom",
                       fingerprint=stack.state.stages["configure"].fingerprint)
    stages.up(stack.state, stack, until="attach")
    assert stack.ran == ["configure", "attach"]


def test_from_runs_that_stage_on_and_trusts_the_ones_before(stack):
    stack.running = False  # not even checked: --from trusts the record of the stages before it
    stages.up(stack.state, stack, from_stage="attach", until="attach")
    assert stack.ran == ["attach"]


def test_the_cli_passes_repeated_force_options():
    from deployer.cli import _parser

    args = _parser().parse_args(["up", "--until", "attach", "--force", "provision", "--force", "configure"])
    assert args.force == ["provision", "configure"]
    assert _parser().parse_args(["up"]).force == []
    with pytest.raises(SystemExit):
        _parser().parse_args(["up", "--force", "everything"])


def test_up_heals_what_a_dead_run_left_before_it_plans_and_says_so(stack, caplog):
    stack.faults_left = ["Patroni on pg1 frozen"]
    with caplog.at_level(logging.INFO, "deployer"):
        stages.up(stack.state, stack, until="attach")
    assert caplog.messages[0] == "healed Patroni on pg1 frozen" and caplog.messages[1].startswith("Plan: ")
