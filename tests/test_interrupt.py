"""A drill run stopped from outside, without a stack: the real ``trial.run`` with real Locust
processes (a master and the spec's workers, writing to a closed port), real observer processes and
the freeze fault, against a stack that records its SSH commands. Ctrl-C (SIGINT, also when the run
inherited it ignored, as a run started with ``&`` from a script does) and SIGTERM end the run within
10 s, healed, every helper process stopped, the drill recorded as interrupted; after ``kill -9``,
``heal_leftovers`` in another process heals the fault and ends the helpers it left running."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

import deployer.state
from deployer import journal
from deployer.leftover_faults import heal_leftovers
from deployer.paths import REPO
from deployer.spec import load_spec
from deployer.state import StackState
from deployer.wait import wait_until
from load import runner

#: The drill run: argv[1] the state root, argv[2] the reports dir. Its stack records SSH commands in
#: ``<reports>/ssh.log``; its hold waits for ever with the fault on.
DRILL = r'''
import sys
from pathlib import Path

import deployer.state
deployer.state.STATE_ROOT = Path(sys.argv[1])

from deployer.budgets import Budgets
from deployer.drills import nemesis, trial
from deployer.drills.catalogue import Drill
from deployer.patroni import Member
from deployer.spec import load_spec
from deployer.state import StackState
from deployer.wait import wait_until
from load import runner
from load import runner

SPEC, REPORTS = load_spec(), Path(sys.argv[2])
runner.Workload.wait_steady = lambda self, seconds: None  # no database: the load never gets steady


class Host:
    def ssh_argv(self, remote):  # an observer: a long-lived program that reads stdin and prints nothing
        return [sys.executable, "-c", "import sys, time\nwhile True: time.sleep(1)"]


class Target:
    readback_latency_s = 1.0
    vantage = lambda self: []
    vnet_node = lambda self, avoid="": "pg2"
    host = lambda self, node: Host()
    wait_for_ssh = lambda self, node: None


class Stack:
    spec, budgets, reports, target, secrets = SPEC, Budgets(SPEC), REPORTS, Target(), {"app": "secret"}
    state = StackState(name="pgha", target="local", spec_path="stack.yaml")
    cluster = lambda self: [Member("pg1", "10.0.1.4", "leader", "running", 0, 1),
                            Member("pg2", "10.0.1.5", "replica", "streaming", 0, 1),
                            Member("pg3", "10.0.1.6", "replica", "streaming", 0, 1)]
    sql = lambda self, port, query: []
    dsn = lambda self, port: "host=127.0.0.1 port=9 dbname=app user=app password=secret connect_timeout=1"
    etcd_leader_elsewhere = lambda self: {"etcd's leader": "pg2", "Patroni's leader": "pg1"}
    etcd_leader = lambda self: "pg2"
    etcd_endpoints = lambda self: "https://10.0.1.4:2379"
    pool_health = lambda self: {}

    def ssh(self, node, command, **_):
        with open(REPORTS / "ssh.log", "a") as log:
            log.write(f"{node}: {' '.join(command)}\n")


def hold(stack, workload, leader, victim, budget):
    wait_until("the end of the world", lambda: False, timeout=600)


drill = Drill("freeze-patroni", nemesis.signalled_patroni("STOP", then="CONT"), lambda b: 20.0, "Never heals.",
              hold=hold)
try:
    trial.run(Stack(), drill)
except KeyboardInterrupt as exc:
    print(f"interrupted: {exc}", flush=True)
    sys.exit(130)
'''

#: What the running drill journals: the fault, Locust (master + workers) and the observers.
FAULT = "Patroni on pg1 frozen (SIGSTOP)"


@pytest.fixture
def drill(tmp_path, monkeypatch):
    """Start the drill run (SIGINT ignored, as inherited from a non-interactive shell's ``&``);
    return (process, state, reports) once its fault is on."""
    monkeypatch.setattr(deployer.state, "STATE_ROOT", tmp_path / "state")
    reports = tmp_path / "reports"
    reports.mkdir()
    script = tmp_path / "drill.py"
    script.write_text(DRILL)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "state"), str(reports)], cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    state = StackState(name="pgha", target="local", spec_path="stack.yaml")
    workers = load_spec().workload.workers
    try:
        wait_until("the fault on, Locust and every observer running",
                   lambda: [e["what"] for e in journal.entries(state)],
                   lambda seen: FAULT in seen and sum("Locust" in w for w in seen) == 1 + workers
                   and sum("observer" in w for w in seen) == 5, timeout=90)
        wait_until("Locust's users recording operations in the history",
                   lambda: sorted(p.name for p in reports.glob("drills/*/history/*") if p.stat().st_size),
                   lambda files: len(files) >= workers, timeout=90)
        yield proc, state, reports
    finally:
        if proc.poll() is None:
            proc.kill()
        for entry in journal.entries(state):
            if entry["kind"] == "process":
                journal.end_process(entry, grace_s=1)


def helpers(state: StackState) -> list[dict]:
    return [e for e in journal.entries(state) if e["kind"] == "process"]


class Stack:
    """What a heal from another process runs on: it records the calls."""

    def __init__(self, state):
        self.state, self.target, self.commands = state, self, []

    def ssh(self, node, command, **_):
        self.commands.append(f"{node}: {' '.join(command)}")

    def wait_for_ssh(self, node):
        self.commands.append(f"wait for SSH on {node}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_ends_a_drill_within_10_s_healed_with_its_helpers_stopped_and_recorded(drill, sig):
    proc, state, reports = drill
    running = helpers(state)
    other = Stack(state)
    assert all("left alone" in s for s in heal_leftovers(state, other, stack=other)) and other.commands == [], \
        "another process never touches the faults of a run that still runs"
    sent = time.monotonic()
    proc.send_signal(sig)
    proc.wait(timeout=10)
    assert time.monotonic() - sent < 10 and proc.returncode == 130
    assert (reports / "ssh.log").read_text().splitlines()[-2:] == [
        "pg1: sudo systemctl kill --kill-who=main -s CONT patroni", "pg1: sudo systemctl start patroni"]
    assert journal.entries(state) == [], "healed, and every helper gone from the journal"
    assert not any(journal.runs(e) for e in running), "Locust and every observer stopped"
    [record] = json.loads((reports / "drills.json").read_text())
    assert record["verdict"] == "interrupted" and record["phase"] == "the fault was on" and record["healed"]
    assert record["interrupted"] == f"{signal.Signals(sig).name} received"


def test_after_kill_9_another_process_heals_the_fault_and_ends_the_helpers_left_running(drill):
    proc, state, reports = drill
    proc.kill()
    proc.wait()
    locust = [e for e in helpers(state) if "Locust" in e["what"]]
    assert locust and all(journal.runs(e) for e in locust), "Locust outlives a killed run (its own session)"
    other = Stack(state)
    sentences = heal_leftovers(state, other, stack=other)
    assert other.commands == ["wait for SSH on pg1", "pg1: sudo systemctl kill --kill-who=main -s CONT patroni",
                              "pg1: sudo systemctl start patroni"]
    assert any(s.startswith(f"{FAULT}: left by a run that died (pid {proc.pid}") and
               s.endswith(": sent SIGCONT and started it.") for s in sentences), sentences
    assert any(s.startswith("The Locust master of a drill's workload") for s in sentences), sentences
    assert journal.entries(state) == [] and not any(journal.runs(e) for e in locust)


def test_two_workloads_on_one_machine_never_share_a_locust_master_port(tmp_path, monkeypatch):
    """A drill and the unit tests (or two drills) ran Locust at once here: the second master failed to
    bind 127.0.0.1:5557 and its workers waited for the first one's."""
    started = []

    class Proc:
        pid, returncode = 0, 0
        poll = lambda self: 0  # noqa: E731 - already ended: nothing to stop

    monkeypatch.setattr(runner.subprocess, "Popen", lambda argv, **_: started.append(argv) or Proc())
    with runner.running([], "dsn", "dsn", tmp_path / "a", workers=2), \
            runner.running([], "dsn", "dsn", tmp_path / "b", workers=2):
        pass
    ports = [argv[argv.index(flag) + 1] for argv in started
             for flag in ("--master-bind-port", "--master-port") if flag in argv]
    assert len(ports) == 6 and len(set(ports[:3])) == 1 and len(set(ports[3:])) == 1 and ports[0] != ports[3]
