"""Session fixtures of the suites: the ``stack`` (attached or deployed) and evidence on failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deployer.spec import DEFAULT_SPEC, load_spec
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
    return Stack.attach(name)


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
