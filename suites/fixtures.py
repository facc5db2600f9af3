"""Session fixtures and hooks of the suites: the ``stack`` (attached, or deployed once for every
xdist worker under a file lock and torn down by the controller at the end), capabilities a test
needs, the order and grouping of suites, and the evidence of a run (log bundles of failed tests,
the HTML page in ``reports/<run id>/``)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_html
from filelock import FileLock

from deployer.drills import report, summary
from deployer.leftover_faults import heal_leftovers
from deployer.paths import RUN_ENV, in_suites, run_reports
from deployer.spec import DEFAULT_SPEC, load_spec
from deployer.stack import Stack
from deployer.state import STATE_ROOT, StackState

log = logging.getLogger("suites")

#: The file in a stack's state dir naming the run that deployed it (that run tears it down).
DEPLOYED_BY = "deployed-by-run"
#: Order of a run: read-only suites first, then faults, then the teardown.
PHASES = ("smoke", "acceptance", "chaos", "teardown")

def drill_params(drills) -> list:
    """Catalogue drills as pytest parameters: id = the drill's name, ``needs`` = its capability."""
    return [pytest.param(d, id=d.name, marks=[pytest.mark.needs(d.needs)] if d.needs else []) for d in drills]


def _deployer(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "deployer.cli", *args], check=True)


def stack_name(config) -> str:
    """``--stack``, else the name in ``--spec``."""
    return config.option.stack or load_spec(Path(config.option.spec) if config.option.spec else DEFAULT_SPEC).name


def _up(name: str) -> bool:
    state = StackState.load(name)
    return state is not None and state.done("attach")


def _attached(config, name: str) -> Stack:
    """``Stack.attach(name)``, after healing what runs that died left on it (``heal_leftovers``),
    each sentence on the terminal (also under output capture) and in the log; the versions its
    platform reports are saved once per run for the report's summary (``summary.save_facts``)."""
    attached = Stack.attach(name)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for sentence in heal_leftovers(attached.state, attached.target, stack=attached):
        log.warning("%s", sentence)
        if reporter is not None:
            reporter.write_line(f"{name}: {sentence}", yellow=True)
    summary.save_facts(attached, run_reports())
    return attached


@pytest.fixture(scope="session")
def stack(request) -> Stack:
    """The stack under test: attached when it is up, else deployed (all four stages) by the first
    worker to get here while the others wait on the lock; the controller tears it down at the end
    (``pytest_sessionfinish``) unless ``--keep-stack``. On attach, faults and helper processes a
    run that died left on it are healed and said so (``_attached``)."""
    opts, name = request.config.option, stack_name(request.config)
    if _up(name):  # no lock for a stack that is up: the deploy's own smoke check runs under its lock
        return _attached(request.config, name)
    STATE_ROOT.mkdir(parents=True, exist_ok=True, mode=0o700)
    with FileLock(STATE_ROOT / f"{name}.lock"):
        if not _up(name):
            _deployer("up", "--target", opts.target, "--spec", str(Path(opts.spec or DEFAULT_SPEC).resolve()),
                      "--name", name)
            (StackState.path_for(name).parent / DEPLOYED_BY).write_text(os.environ[RUN_ENV])
    return _attached(request.config, name)


@pytest.fixture(autouse=True)
def _needs(request):
    """``@pytest.mark.needs("crash_vm", ...)``: skip, naming the reason, on a target without them."""
    wanted = {cap for mark in request.node.iter_markers("needs") for cap in mark.args}
    if wanted:
        target = request.getfixturevalue("stack").target
        missing = sorted(wanted - target.capabilities)
        if missing:
            pytest.skip(f"target {target.name} lacks capability {', '.join(missing)}")


def _phase(item) -> int:
    return max((i for i, phase in enumerate(PHASES) if item.get_closest_marker(phase)), default=1)


def pytest_collection_modifyitems(config, items):
    """Read-only suites first, chaos after them in one xdist group (one worker, serialised), the
    teardown last; under xdist a teardown runs only when selected alone (``-m teardown``)."""
    items.sort(key=_phase)
    for item in items:
        if item.get_closest_marker("chaos"):
            item.add_marker(pytest.mark.xdist_group("chaos"))
    if getattr(config.option, "numprocesses", None) and config.option.markexpr != "teardown":
        kept = [i for i in items if not i.get_closest_marker("teardown")]
        if len(kept) != len(items):
            config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("teardown")])
            items[:] = kept


def pytest_sessionfinish(session):
    """In the controller of a suites run: the teardown of a stack this run deployed (also after a
    failure or Ctrl-C)."""
    config = session.config
    if hasattr(config, "workerinput") or not in_suites(config.args, config.invocation_params.dir):
        return
    if config.option.keep_stack:
        return
    marker = StackState.path_for(stack_name(config)).parent / DEPLOYED_BY
    if marker.exists() and marker.read_text() == os.environ.get(RUN_ENV):
        _deployer("down", "--name", stack_name(config))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep logs from every node when a test that uses the stack fails, linked from the HTML report."""
    result = yield
    if result.when == "call" and result.failed and "stack" in item.fixturenames:
        stack: Stack = item.funcargs["stack"]
        bundle = run_reports() / "logs" / item.name
        report.collect_logs(stack, bundle)
        result.extras = [*getattr(result, "extras", []), pytest_html.extras.html(report.log_links(bundle, run_reports()))]
    return result
