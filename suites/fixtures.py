"""Session fixtures of the suites: the ``stack`` (attached or deployed) and evidence on failure."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.spec import DEFAULT_SPEC, load_spec
from deployer.html_report import write_index
from deployer.stack import Stack

NODE_LOGS = {
    "journal": "journalctl --no-pager -n 400",
    "patroni": "journalctl --no-pager -u patroni -n 400",
    "etcd": "journalctl --no-pager -u etcd -n 200",
    "haproxy": "journalctl --no-pager -u haproxy -n 200",
    "postgresql": "tail -n 300 /var/log/postgresql/*.log",
}


@pytest.fixture(scope="session")
def stack(request) -> Stack:
    """The stack under test. With ``--deploy`` it is deployed here and torn down at session end."""
    opts = request.config.option
    spec_path = Path(opts.spec) if opts.spec else DEFAULT_SPEC
    name = opts.stack or load_spec(spec_path).name
    if opts.deploy:
        cmd = [sys.executable, "-m", "deployer.cli", "up", "--target", opts.target, "--spec", str(spec_path), "--name", name, "--until", "attach"]
        request.addfinalizer(lambda: subprocess.run([sys.executable, "-m", "deployer.cli", "down", "--name", name], check=False))
        subprocess.run(cmd, check=True)
    stack = Stack.attach(name)
    if opts.markexpr != "smoke":  # one run, one report; the deploy's own smoke check keeps the last run's
        for stale in ("logs", "drills", "drills.json", "failover.json", "index.html"):
            path = stack.reports / stale
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    _STACKS.append(stack)
    return stack


_OUTCOMES: list[tuple[str, str, float]] = []
_STACKS: list[Stack] = []


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = "error" if report.when == "setup" and report.failed else report.outcome
        _OUTCOMES.append((report.nodeid, outcome, report.duration))


def pytest_sessionfinish(session):
    """Write reports/<stack>/index.html for the stack the session used."""
    if _STACKS and _OUTCOMES and session.config.option.markexpr != "smoke":
        write_index(_STACKS[0].reports, _OUTCOMES)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep logs from every node when a test that uses the stack fails."""
    report = yield
    if report.when == "call" and report.failed and "stack" in item.fixturenames:
        stack: Stack = item.funcargs["stack"]
        bundle = stack.reports / "logs" / item.name
        bundle.mkdir(parents=True, exist_ok=True)
        for node in stack.spec.nodes:
            for label, command in NODE_LOGS.items():
                try:
                    out = stack.ssh(node.name, f"sudo sh -c {command!r}", timeout=20, check=False)
                    (bundle / f"{node.name}-{label}.log").write_text(out.stdout + out.stderr)
                except Exception as exc:  # noqa: BLE001 - evidence is best effort, the failure stands
                    (bundle / f"{node.name}-{label}.log").write_text(f"could not collect: {exc}\n")
    return report
