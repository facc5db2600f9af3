"""The morning report: a real pytest run with the suites' report hooks writes ``report.html`` whose
summary names the stack, its versions, the failed checks and the drills (failing first, the
regression flagged against the history), appends the run to the history, and shows no "No log
output captured." box; rendered by headless Chromium, the summary is on the page."""

from __future__ import annotations

import json
import shutil
import subprocess
import types

import pytest

from deployer.drills import summary, trend
from deployer.paths import INVOCATION_ENV, REPO, RUN_ENV

#: Real drill records of one `make test` here: its suites run's drills, with the switchover of its
#: budget's negative control (the budget scaled to 0.42 s: failed) in place of the passing one.
MADE_TEST = json.loads((REPO / "tests" / "fixtures" / "drills.json").read_text())

FACTS = {"stack": "pgha", "target": "local", "profile": "ci", "synchronous_mode": False,
         "versions": {"PostgreSQL": {"15.14 (Debian 15.14-0+deb12u1)": ["pg1", "pg2", "pg3"]},
                      "Patroni": {"4.1.0": ["pg1", "pg2", "pg3"]}, "etcd": {"3.4.23": ["pg1", "pg2", "pg3"]},
                      "HAProxy": {"2.6.12-1+deb12u2 2025/04/04 - https://haproxy.org/": ["pg1", "pg2"],
                                  "2.4.0": ["pg3"]}},
         "unread": {}}
TESTS = """
def test_a_check_that_passes_quietly():
    pass

def test_a_check_that_fails():
    assert 1 == 2, "the leader is not writable"
"""


def record(drill: str, gap: float, verdict: str = "pass", slowest: str = "detection", zombie: float = 0.0) -> dict:
    return {"drill": drill, "profile": "ci", "victim": "pg1", "write_gap_s": gap, "gap_slowest": slowest,
            "measured_s": gap, "budget_s": 8.0, "budget_from": "fault", "lost": 0, "zombie_primary_s": zombie,
            "verdict": verdict}


RECORDS = [record("switchover", 2.30), record("freeze-patroni", 17.3, zombie=1.02),
           record("kill-postmaster", 9.5, "write gap 9.5 s exceeds the budget 8 s", slowest="election"),
           {"drill": "crash-primary-vm", "profile": "ci", "verdict": "interrupted", "victim": "pg2",
            "phase": "the fault was on"}]


def test_the_drill_table_puts_failing_and_interrupted_drills_first():
    judged = [trend.judge("switchover", 2.3, [1.4, 1.5, 1.45, 1.5, 1.47]), trend.judge("freeze-patroni", 17.3, [])]
    rows = summary.drill_rows(RECORDS, judged)
    assert [(bad, cells[0]) for bad, cells in rows] == [
        (True, "kill-postmaster"), (True, "crash-primary-vm"), (False, "switchover"), (False, "freeze-patroni")]
    assert rows[0][1][2:6] == ["9.50 s (election)", "9.50 of 8 s from the fault", "0", "0.00"]
    assert rows[2][1][6] == "regression" and rows[3][1][6].startswith("not judged")
    assert rows[0][1][7] == "FAIL: write gap 9.5 s exceeds the budget 8 s"


def make_report(pytester, monkeypatch, tmp_path, *plugins: str):
    """A real pytest run of two checks (one fails) with ``plugins``: this run's drills (``MADE_TEST``)
    and facts in its run directory, five previous switchovers in the history; (the run's directory,
    the history)."""
    monkeypatch.setenv(INVOCATION_ENV, str(tmp_path / "invocation"))
    monkeypatch.setenv(RUN_ENV, "run-now")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # its own process: an in-process run would unload numpy it imports
    run_dir = tmp_path / "invocation" / "run-now"
    run_dir.mkdir(parents=True)
    (run_dir / "drills.json").write_text(json.dumps(MADE_TEST))
    (run_dir / summary.FACTS).write_text(json.dumps(FACTS))
    history = tmp_path / "history.jsonl"
    for i, gap in enumerate([1.40, 1.52, 1.45, 1.49, 1.55]):
        trend.append_history(history, trend.history_lines([record("switchover", gap)], run=f"run-{i}", at="t",
                                                          stack="pgha", target="local"))
    pytester.makepyfile(test_checks=TESTS)
    options = [a for plugin in plugins for a in ("-p", plugin)] + [f"--history={history}"] * bool(plugins)
    result = pytester.runpytest_subprocess(*options, "-p", "no:cacheprovider", f"--html={run_dir / 'report.html'}",
                                "--self-contained-html")
    result.assert_outcomes(passed=1, failed=1)
    return run_dir, history


@pytest.fixture
def report(pytester, monkeypatch, tmp_path):
    return make_report(pytester, monkeypatch, tmp_path, "suites.report_hooks")


def summary_problems(page: str) -> list[str]:
    """What the morning summary lacks at the top of ``page`` (report.html): the stack and its
    versions, the failed check, the drills failing first, the regression flag, the trend plot; and
    a "No log output captured." box anywhere."""
    top = page[page.index("<h2>Summary</h2>"):page.index("run-count")]
    wanted = {"the stack": "Stack <b>pgha</b> on target <b>local</b>, spec profile <b>ci</b>",
              "the versions": "<b>Patroni</b> 4.1.0</li>", "a version differing by node": "2.4.0 on pg3",
              "the failed check": "1 failed: <code>test_checks.py::test_a_check_that_fails</code>",
              "the regression": "switchover: write gap 1.66 s beyond the p95", "the trend plot": "data:image/png;base64,",
              "the failed drill": "FAIL: write gap 1.7 s exceeds the budget 0.42 s",
              "the slowest hop": "20.45 s (detection)", "the zombie seconds": "<td>2.06</td>"}
    problems = [f"no {what}" for what, text in wanted.items() if text not in top]
    if "<td>kill-postmaster</td>" in top and top.index("<td>kill-postmaster</td>") < top.index("<td>switchover</td>"):
        problems.append("a passing drill before a failing one")
    return problems + ["a 'No log output captured' box"] * ("No log output captured" in page)


def test_the_report_opens_with_the_summary_and_the_run_joins_the_history(report):
    run_dir, history = report
    page = (run_dir / "report.html").read_text()
    assert summary_problems(page) == []
    assert "table.pgha-drills tr.pgha-row-fail td" in page  # report.css
    assert [(h["run"], h["drill"]) for h in trend.read_history(history)][5:] == [("run-now", r["drill"]) for r in MADE_TEST]


def test_the_summary_check_fails_on_a_report_without_the_hooks(pytester, monkeypatch, tmp_path):
    """Negative control: pytest-html alone writes no summary and a "No log output captured." box."""
    run_dir, _ = make_report(pytester, monkeypatch, tmp_path)
    problems = summary_problems((run_dir / "report.html").read_text())
    assert "no the stack" in problems and "no the regression" in problems
    assert "a 'No log output captured' box" in problems


def chromium() -> str:
    """The headless browser ``make deps`` installs (Debian's ``chromium``)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert found, "no chromium on PATH: `make deps` installs Debian's chromium"
    return found


def test_chromium_renders_the_summary_and_the_results(report, tmp_path):
    run_dir, _ = report
    dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}/c",
                          "--virtual-time-budget=5000", "--dump-dom", (run_dir / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert summary_problems(page) == [], page[:3000]
    assert "test_a_check_that_fails" in page and "the leader is not writable" in page  # the results, rendered by JS


class FakeStack:
    """What ``platform_facts`` asks a stack: each node's answer to the version script, or a failure."""

    def __init__(self, answers: dict[str, str | Exception]):
        self.answers = answers
        node = lambda name: types.SimpleNamespace(name=name)  # noqa: E731
        self.spec = types.SimpleNamespace(nodes=[node(n) for n in answers], profile="ci",
                                          ports=types.SimpleNamespace(etcd_client=2379),
                                          patroni=types.SimpleNamespace(synchronous_mode=True))
        self.state, self.target = types.SimpleNamespace(name="pgha"), types.SimpleNamespace(name="local")

    def ssh(self, node, argv, timeout):
        assert argv[5:] == ["2379", "/etc/pgha/tls/ca.crt", "/etc/pgha/tls/node.crt", "/etc/pgha/tls/node.key"] and "SHOW server_version" in argv[3]
        answer = self.answers[node]
        if isinstance(answer, Exception):
            raise answer
        return types.SimpleNamespace(stdout=answer)


ANSWER = ('15.20 (Debian 15.20-0+deb12u1)\n{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}\n'
          "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\n")


def test_platform_facts_group_each_version_by_the_nodes_reporting_it(monkeypatch):
    monkeypatch.setattr(summary.patroni, "get", lambda target, node, path: {"patroni": {"version": "4.1.0"}})
    old = ANSWER.replace("15.20 (Debian 15.20-0+deb12u1)", "15.14 (Debian 15.14-0+deb12u1)")
    facts = summary.platform_facts(FakeStack({"pg1": ANSWER, "pg2": ANSWER, "pg3": old}))
    assert facts["versions"] == {
        "PostgreSQL": {"15.20 (Debian 15.20-0+deb12u1)": ["pg1", "pg2"], "15.14 (Debian 15.14-0+deb12u1)": ["pg3"]},
        "etcd": {"3.4.23": ["pg1", "pg2", "pg3"]}, "Patroni": {"4.1.0": ["pg1", "pg2", "pg3"]},
        "HAProxy": {"2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/": ["pg1", "pg2", "pg3"]}}
    assert (facts["stack"], facts["target"], facts["profile"], facts["synchronous_mode"], facts["unread"]) == (
        "pgha", "local", "ci", True, {})


def test_a_node_that_cannot_answer_is_named_with_why(monkeypatch):
    monkeypatch.setattr(summary.patroni, "get", lambda target, node, path: {"patroni": {"version": "4.1.0"}})
    facts = summary.platform_facts(FakeStack({"pg1": ANSWER, "pg2": TimeoutError("ssh timed out")}))
    assert facts["unread"] == {"pg2": "not read (TimeoutError: ssh timed out)"}
    assert facts["versions"]["Patroni"] == {"4.1.0": ["pg1"]}
    assert "pg2: not read (TimeoutError: ssh timed out)" in summary.summary_html(facts, [], [], [], None)


def test_the_facts_are_saved_once_per_run(monkeypatch, tmp_path):
    """Workers and nested runs share the run directory: the first to attach writes, nobody rewrites."""
    monkeypatch.setattr(summary.patroni, "get", lambda target, node, path: {"patroni": {"version": "4.1.0"}})
    summary.save_facts(FakeStack({"pg1": ANSWER}), tmp_path)
    summary.save_facts(FakeStack({"pg1": TimeoutError("later")}), tmp_path)
    saved = json.loads((tmp_path / summary.FACTS).read_text())
    assert saved["unread"] == {} and list(tmp_path.iterdir()) == [tmp_path / summary.FACTS]
