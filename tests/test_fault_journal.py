"""The fault journal without a stack: a fault is journaled before it is applied and gone after its
heal; what a run that died left is healed by another process and said so, what a live run holds
is left alone; journal writes never revert another process's state; ``check_nodes_answer`` names
the node and what did not answer."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys

import pytest

import deployer.state
from deployer import journal, leftover_faults
from deployer.drills import nemesis
from deployer.leftover_faults import check_nodes_answer, heal_leftovers, unhealed
from deployer.spec import load_spec
from deployer.state import StackState
from deployer.targets import TargetError
from deployer.wait import wait_until

SPEC = load_spec()


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setattr(deployer.state, "STATE_ROOT", tmp_path)
    return StackState(name="pgha", target="local", spec_path="stack.yaml")


class FakeTarget:
    spec = SPEC

    def __init__(self):
        self.calls = []

    def wait_for_ssh(self, node):
        self.calls.append(("wait_for_ssh", node))

    def heal(self, node):
        self.calls.append(("heal", node))


class FakeStack:
    spec = SPEC

    def __init__(self, state, fail: str = ""):
        self.state, self.target, self.commands, self.fail = state, FakeTarget(), [], fail

    def ssh(self, node, command, **_):
        if self.fail and self.fail in " ".join(command):
            raise TargetError(f"on {node}: ssh: connect to host {node} port 22: Connection timed out")
        self.commands.append((node, " ".join(command)))

    def haproxy_admin(self, node, command):
        self.commands.append((node, f"haproxy: {command}"))


def group_alive(pgid: int) -> list[str]:
    """The processes of group ``pgid`` that have not ended (zombies have)."""
    rows = subprocess.run(["ps", "-e", "-o", "pgid=,stat=,pid="], capture_output=True, text=True).stdout.splitlines()
    return [r for r in rows if r.split()[0] == str(pgid) and not r.split()[1].startswith("Z")]


def ended_process() -> dict:
    """An owner that has certainly ended: a child that ran and was reaped."""
    proc = subprocess.Popen(["sleep", "0.05"])
    owner = {"pid": proc.pid, "started": journal.started(proc.pid), "host": socket.gethostname()}
    proc.wait()
    return owner


@contextlib.contextmanager
def owned_by(owner: dict):
    """Journal entries recorded in the body belong to ``owner``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(journal, "me", lambda: owner)
        yield


def test_a_fault_is_journaled_before_it_is_applied_and_removed_after_its_heal(state):
    stack, seen = FakeStack(state), []
    stack.ssh = lambda node, command, **_: seen.append((" ".join(command), [e["what"] for e in journal.entries(state)]))
    with nemesis.signalled_patroni("STOP", then="CONT")(stack, "pg1"):
        pass
    assert seen[0] == ("sudo systemctl kill --kill-who=main -s STOP patroni", ["Patroni on pg1 frozen (SIGSTOP)"]), \
        "the journal on disk must hold the fault when it is applied"
    assert journal.entries(state) == [] and state.data["journal"] == [], "healed: out of the journal"


def test_a_fault_whose_heal_fails_stays_in_the_journal_with_its_heal(state):
    stack = FakeStack(state, fail="start patroni")
    with pytest.raises(TargetError), nemesis.signalled_patroni("STOP", then="CONT")(stack, "pg1"):
        pass
    [entry] = journal.entries(state)
    assert entry["heal"] == [["target.wait_for_ssh", "pg1"],
                             ["ssh", "pg1", ["sudo", "systemctl", "kill", "--kill-who=main", "-s", "CONT", "patroni"]],
                             ["ssh", "pg1", ["sudo", "systemctl", "start", "patroni"]]]
    assert entry["owner"]["pid"] == journal.me()["pid"] and entry["owner"]["started"]


def test_the_nemesis_record_and_the_targets_mark_of_one_fault_are_one_entry(state):
    journal.record(state, "pg1 isolated", heal=[["target.heal", "pg1"]], key="isolated:pg1")
    journal.record(state, "pg1 isolated", heal=[["target.heal", "pg1"]], key="isolated:pg1")
    assert len(journal.entries(state)) == 1
    journal.remove(state, key="isolated:pg1")
    assert journal.entries(state) == []


def test_a_heal_call_outside_the_allowed_ones_is_refused(state):
    with pytest.raises(ValueError, match="not one of"):
        journal.record(state, "x", heal=[["target.teardown"]])


def test_journal_writes_never_revert_what_another_process_saved(state):
    state.save()
    other = StackState.load("pgha")
    other.record("configure", ok=True, seconds=1.0)  # another process, after this one loaded the state
    journal.record(state, "etcd stopped on pg2", heal=[["ssh", "pg2", ["true"]]])
    on_disk = StackState.load("pgha")
    assert "configure" in on_disk.stages and len(on_disk.data["journal"]) == 1


def test_a_dead_runs_faults_are_healed_newest_first_and_said_so(state):
    with owned_by(ended_process()):
        journal.record(state, "etcd stopped on pg2", heal=[["ssh", "pg2", ["sudo", "systemctl", "start", "etcd"]]],
                       healed="started it again", node="pg2")
        nemesis_heal = [["target.wait_for_ssh", "pg1"], ["ssh", "pg1", ["sudo", "systemctl", "start", "patroni"]]]
        journal.record(state, "Patroni on pg1 frozen (SIGSTOP)", heal=nemesis_heal, healed="sent SIGCONT and started it")
    stack = FakeStack(state)
    sentences = heal_leftovers(state, stack.target, stack=stack)
    assert stack.commands == [("pg1", "sudo systemctl start patroni"), ("pg2", "sudo systemctl start etcd")]
    assert stack.target.calls == [("wait_for_ssh", "pg1")]
    assert len(sentences) == 2 and sentences[0].startswith("Patroni on pg1 frozen (SIGSTOP): left by a run that died")
    assert sentences[0].endswith(": sent SIGCONT and started it.")
    assert journal.entries(state) == [] and heal_leftovers(state, stack.target, stack=stack) == []


def test_a_live_runs_faults_are_left_alone_and_a_reused_pid_is_not_the_same_run(state):
    live = subprocess.Popen(["sleep", "60"])
    try:
        owner = {"pid": live.pid, "started": journal.started(live.pid), "host": socket.gethostname()}
        with owned_by(owner):
            journal.record(state, "pg3 isolated", heal=[["target.heal", "pg3"]])
        stack = FakeStack(state)
        [sentence] = heal_leftovers(state, stack.target, stack=stack)
        assert "left alone" in sentence and str(live.pid) in sentence and stack.target.calls == []
        assert len(journal.entries(state)) == 1
        with owned_by({**owner, "started": str(int(owner["started"]) - 1)}):  # same pid, another process
            journal.record(state, "pg2 isolated", heal=[["target.heal", "pg2"]])
        heal_leftovers(state, stack.target, stack=stack)
        assert stack.target.calls == [("heal", "pg2")]
    finally:
        live.kill()
        live.wait()


def test_a_failed_leftover_heal_is_said_and_kept_for_the_next_attempt(state):
    with owned_by(ended_process()):
        journal.record(state, "etcd stopped on pg2", heal=[["ssh", "pg2", ["sudo", "systemctl", "start", "etcd"]]])
    [sentence] = heal_leftovers(state, FakeTarget(), stack=FakeStack(state, fail="start etcd"))
    assert "its heal failed (TargetError: on pg2: ssh: connect to host pg2" in sentence and "tries again" in sentence
    assert unhealed(state) == ["etcd stopped on pg2"]


def test_a_dead_runs_helper_process_is_ended_with_its_group_and_one_already_gone_is_only_forgotten(state):
    helper = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        with owned_by(ended_process()):
            journal.record_process(state, "the Locust master of a drill's workload", helper.pid)
            journal.record_process(state, "Locust worker 1 of a drill's workload", ended_process()["pid"])
        [sentence] = heal_leftovers(state, FakeTarget(), stack=FakeStack(state))
        assert sentence.startswith(f"The Locust master of a drill's workload (pid {helper.pid}) still ran")
        assert sentence.endswith("ended it (SIGTERM).")
        assert helper.wait(timeout=5) == -15 and journal.entries(state) == []
        wait_until("the whole group to end, not only its leader", lambda: group_alive(helper.pid), lambda g: not g,
                   timeout=5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            helper.kill()


class Host:
    def __init__(self, node, answer: str):
        self.node, self.ssh_host, self.ssh_port, self.answer = node, "127.0.0.1", 22, answer

    def ssh_argv(self, remote):
        return [sys.executable, "-c", self.answer]


class AnsweringTarget:
    """Nodes whose SSH answers ``ssh`` (a Python program standing in for the remote command) and
    whose Patroni REST API is ``rest[node]`` (a port on this machine)."""

    spec = SPEC
    ca_file = None  # plain HTTP here: requests' default

    def __init__(self, ssh: dict[str, str], rest: dict[str, int]):
        self.ssh, self.rest = ssh, rest

    def host(self, node):
        return Host(node, self.ssh.get(node, "print('4242 Ssl')"))

    def patroni_url(self, node):
        return f"http://127.0.0.1:{self.rest[node]}"


@pytest.fixture
def ports():
    """(a port that refuses, a port that accepts connections and never answers: a frozen Patroni)."""
    refusing, silent = socket.socket(), socket.socket()
    refusing.bind(("127.0.0.1", 0))
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    yield refusing.getsockname()[1], silent.getsockname()[1]
    refusing.close()
    silent.close()


@pytest.fixture
def short(monkeypatch):
    monkeypatch.setattr(leftover_faults, "ANSWER_S", 4)


def test_nodes_whose_patroni_refuses_or_is_not_running_pass_the_readiness_check(ports, short):
    refused, _ = ports
    check_nodes_answer(AnsweringTarget({"pg2": "print('')"}, {n.name: refused for n in SPEC.nodes}))


def test_a_hung_patroni_rest_api_is_named_with_its_node(ports, short):
    refused, silent = ports
    target = AnsweringTarget({}, {"pg1": refused, "pg2": silent, "pg3": refused})
    with pytest.raises(TargetError, match=r"pg2's Patroni REST API did not answer .*last seen: ReadTimeout"):
        check_nodes_answer(target)


def test_a_stopped_patroni_is_named_with_its_node_and_how_to_continue_it(ports, short):
    refused, _ = ports
    target = AnsweringTarget({"pg3": "print('777 Tl')"}, {n.name: refused for n in SPEC.nodes})
    with pytest.raises(TargetError, match=r"Patroni on pg3 \(pid 777\) is stopped \(process state Tl"):
        check_nodes_answer(target)


def test_a_node_that_does_not_answer_ssh_is_named(ports, short):
    refused, _ = ports
    target = AnsweringTarget({"pg1": "import sys; sys.stderr.write('Connection timed out'); sys.exit(255)"},
                             {n.name: refused for n in SPEC.nodes})
    with pytest.raises(TargetError, match=r"pg1 did not answer over SSH \(127.0.0.1:22\).*Connection timed out"):
        check_nodes_answer(target)
