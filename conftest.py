"""Root pytest configuration: the one option group, the markers and the plugins every suite shares.

Options (group ``pgha``): ``--stack NAME`` (default: the spec's name) attaches to that stack; when
no stack of that name is up, the session deploys the full staged stack through the deployer and
tears it down at the end, unless ``--keep-stack``. ``--spec`` and ``--target`` say what to deploy;
``--timeout-multiplier`` scales every deadline (this process, xdist workers, deployers started);
``--budget-scale`` every drill's budget (a drill fails once its budget is below what the fault takes).
A run of the suites writes ``reports/<run id>/`` (``reports/latest`` points at it): JUnit XML
(xunit2), a self-contained pytest-html report (drill cards and plots beside their tests, log
bundles linked from failed tests), drill records, and log bundles of failed tests.
"""

from __future__ import annotations

import os

import pytest

from deployer.paths import in_suites, point_latest, run_reports
from deployer.wait import MULTIPLIER_ENV

pytest_plugins = ["suites.fixtures", "suites.report_hooks", "pytester"]  # pytester: the unit tests of the suites' own hooks

MARKERS = {
    "smoke": "fast read-only checks right after a deploy (`pytest -m smoke --stack NAME`)",
    "acceptance": "read-only checks of the whole stack against the spec; run in parallel under xdist",
    "chaos": "injects faults; serialised in one xdist group, after the read-only suites",
    "teardown": "tears the stack down and checks nothing is left; runs last (or alone)",
    "needs(*capabilities)": "skipped, with the reason, on a target without these capabilities",
    "e2e": "the project's own tests that deploy the real local stack (root, minutes)",
}


def pytest_addoption(parser):
    group = parser.getgroup("pgha", "HA PostgreSQL stack")
    group.addoption("--stack", default=None, help="name of the stack to check (default: the spec's name); "
                                                  "deployed first when it is not up")
    group.addoption("--spec", default=None, help="stack spec file (default: stack.yaml)")
    group.addoption("--target", default="local", help="target to deploy on when the stack is not up (default: local)")
    group.addoption("--keep-stack", action="store_true", help="leave running a stack this session deployed")
    group.addoption("--timeout-multiplier", type=float, default=None,
                    help=f"scale every deadline (default: ${MULTIPLIER_ENV} or 1)")
    group.addoption("--budget-scale", type=float, default=1.0,
                    help="scale every drill's budget (below 1: rehearse a tighter objective; default 1)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    for marker, text in MARKERS.items():
        config.addinivalue_line("markers", f"{marker}: {text}")
    if config.option.timeout_multiplier:
        os.environ[MULTIPLIER_ENV] = str(config.option.timeout_multiplier)
    if in_suites(config.args, config.invocation_params.dir) and not hasattr(config, "workerinput"):  # the controller names the run, workers inherit it
        reports = run_reports()
        point_latest(reports)
        if not config.option.xmlpath:
            config.option.xmlpath = str(reports / "junit.xml")
        if not config.option.htmlpath:
            config.option.htmlpath = str(reports / "report.html")
            config.option.self_contained_html = True
