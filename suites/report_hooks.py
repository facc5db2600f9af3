"""The run's ``report.html`` as a person reads it in the morning (pytest-html hooks, in the
controller): the summary at the top (``deployer.drills.summary``: the stack, its versions, the
failed checks, the drill table failing first, the write-gap trend with its regression flag), this
run's drills appended to the history (``--history``, default ``reports/history.jsonl``) before it is
judged, the report's stylesheet (``report.css``: readable text, the timeline plot whole) and no
"No log output captured." box under a test that printed nothing."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from deployer.drills import trend
from deployer.drills.summary import FACTS, summary_html
from deployer.paths import HISTORY, run_reports

CSS = Path(__file__).with_name("report.css")
NO_LOG = "No log output captured."


def pytest_addoption(parser):
    parser.getgroup("pgha").addoption("--history", default=str(HISTORY),
                                      help="the drills' history across runs, appended to (default: reports/history.jsonl)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.option.css = [*config.option.css, str(CSS)]


def _controller_with_report(config) -> bool:
    return bool(config.option.htmlpath) and not hasattr(config, "workerinput")


def _load(path) -> list | dict:
    return json.loads(path.read_text()) if path.exists() else []


def pytest_sessionfinish(session):
    """Append this run's drill records (``drills.json``) to the history, once per run and drill."""
    config = session.config
    if not _controller_with_report(config):
        return
    run_dir = run_reports()
    records, facts = _load(run_dir / "drills.json"), _load(run_dir / FACTS) or {}
    if records:
        at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        trend.append_history(Path(config.option.history), trend.history_lines(
            records, run=run_dir.name, at=at, stack=facts.get("stack", ""), target=facts.get("target", "")))


def pytest_html_report_title(report):
    report.title = f"pgha run {run_reports().name}"


def pytest_html_results_summary(prefix, summary, postfix, session):
    """The summary first, above pytest-html's counts."""
    config = session.config
    run_dir = run_reports()
    records = _load(run_dir / "drills.json")
    judged = trend.trends(trend.read_history(Path(config.option.history)), run_dir.name) if records else []
    plot = trend.plot_trend(judged, run_dir / "trend.png") if judged else None
    stats = config.pluginmanager.get_plugin("terminalreporter").stats
    failed = [r.nodeid for key in ("failed", "error") for r in stats.get(key, []) if getattr(r, "nodeid", None)]
    prefix.insert(0, summary_html(_load(run_dir / FACTS) or {}, records, judged, list(dict.fromkeys(failed)), plot))


def pytest_html_results_table_html(report, data):
    """Drop pytest-html's "No log output captured." line: a test without output shows none."""
    data[:] = [line for line in data if line != NO_LOG]
