"""Session fixtures of the suites: the ``stack`` (attached or deployed), capabilities a test needs,
and the evidence of a run (log bundles of failed tests, ``reports/<stack>/index.html``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deployer.drills import report
from deployer.spec import DEFAULT_SPEC, load_spec
from deployer.stack import Stack

_OUTCOMES: list[tuple[str, str, float]] = []
_STACKS: list[Stack] = []


def drill_params(drills) -> list:
    """Catalogue drills as pytest parameters: id = the drill's name, ``needs`` = its capability."""
    return [pytest.param(d, id=d.name, marks=[pytest.mark.needs(d.needs)] if d.needs else []) for d in drills]


def _one_run_one_report(config) -> bool:
    """A run of the suites owns the report; the deploy's own smoke check keeps the last run's."""
    return config.option.markexpr != "smoke"


@pytest.fixture(scope="session")
def stack(request) -> Stack:
    """The stack under test. With ``--deploy`` it is deployed here and torn down at session end."""
    opts = request.config.option
    spec_path = Path(opts.spec) if opts.spec else DEFAULT_SPEC
    name = opts.stack or load_spec(spec_path).name
    if opts.deploy:
        cmd = [sys.executable, "-m", "deployer.cli", "up", "--target", opts.target, "--spec", str(spec_path),
               "--name", name, "--until", "attach"]
        request.addfinalizer(lambda: subprocess.run([sys.executable, "-m", "deployer.cli", "down", "--name", name],
                                                    check=False))
        subprocess.run(cmd, check=True)
    stack = Stack.attach(name)
    if _one_run_one_report(request.config):
        report.clear_run(stack.reports)
    _STACKS.append(stack)
    return stack


@pytest.fixture(autouse=True)
def _needs(request):
    """``@pytest.mark.needs("crash_vm", ...)``: skip, naming the reason, on a target without them."""
    wanted = {cap for mark in request.node.iter_markers("needs") for cap in mark.args}
    if wanted:
        target = request.getfixturevalue("stack").target
        missing = sorted(wanted - target.capabilities)
        if missing:
            pytest.skip(f"target {target.name} lacks capability {', '.join(missing)}")


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = "error" if report.when == "setup" and report.failed else report.outcome
        _OUTCOMES.append((report.nodeid, outcome, report.duration))


def pytest_sessionfinish(session):
    """Write reports/<stack>/index.html for the stack the session used."""
    if _STACKS and _OUTCOMES and _one_run_one_report(session.config):
        report.write_index(_STACKS[0].reports, _OUTCOMES)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep logs from every node when a test that uses the stack fails."""
    result = yield
    if result.when == "call" and result.failed and "stack" in item.fixturenames:
        stack: Stack = item.funcargs["stack"]
        report.collect_logs(stack, stack.reports / "logs" / item.name)
    return result
