"""The drills' trend: the regression rule (beyond the previous runs' p95, judged from
``MIN_PREVIOUS`` previous runs), the history one line per run and drill, and the judging of a run
against the earlier lines of the same drill, target and profile only."""

from __future__ import annotations

import pytest

from deployer.drills import trend

STEADY = [1.40, 1.52, 1.45, 1.49, 1.55, 1.47]


def test_a_gap_beyond_the_previous_runs_p95_is_a_regression():
    t = trend.judge("switchover", 2.30, STEADY)
    assert t.regression and t.p95 == pytest.approx(1.5425)  # 1.52 + 0.75 x (1.55 - 1.52)
    assert "beyond the p95 1.54 s of its previous 6 runs: a regression" in t.summary


def test_a_gap_within_the_previous_runs_is_not_a_regression():
    """Negative control of the rule: the same history, a figure inside its spread."""
    t = trend.judge("switchover", 1.50, STEADY)
    assert not t.regression and "within the p95" in t.summary


def test_fewer_previous_runs_than_the_minimum_are_not_judged_however_far_off():
    t = trend.judge("switchover", 60.0, STEADY[: trend.MIN_PREVIOUS - 1])
    assert (t.regression, t.p95) == (False, None)
    assert f"not judged (4 previous run(s), the rule needs {trend.MIN_PREVIOUS})" in t.summary
    assert trend.judge("switchover", 60.0, STEADY[: trend.MIN_PREVIOUS]).regression


def test_the_rule_looks_back_at_the_last_runs_only():
    old_slow = [30.0] * 10 + [1.5] * trend.LAST_RUNS
    assert trend.judge("switchover", 2.0, old_slow).regression
    assert len(trend.judge("switchover", 2.0, old_slow).previous) == trend.LAST_RUNS


def record(drill: str, gap: float, verdict: str = "pass", profile: str = "ci") -> dict:
    return {"drill": drill, "profile": profile, "victim": "pg1", "write_gap_s": gap, "gap_slowest": "detection",
            "measured_s": gap, "budget_s": 8.0, "budget_from": "fault", "lost": 0, "zombie_primary_s": 0.0,
            "verdict": verdict}


def lines(run: str, *records: dict, target: str = "local") -> list[dict]:
    return trend.history_lines(list(records), run=run, at="2026-12-05T07:00:00+00:00", stack="pgha", target=target)


def test_history_lines_carry_the_figures_and_a_short_verdict():
    interrupted = {"drill": "freeze-patroni", "profile": "ci", "verdict": "interrupted", "victim": "pg2"}
    ok, failed, stopped = lines("r1", record("switchover", 1.4), record("kill-postmaster", 9.0, "gap exceeds"),
                                interrupted)
    assert ok == {"run": "r1", "at": "2026-12-05T07:00:00+00:00", "stack": "pgha", "target": "local", "profile": "ci",
                  "drill": "switchover", "victim": "pg1", "write_gap_s": 1.4, "slowest_hop": "detection",
                  "measured_s": 1.4, "budget_s": 8.0, "budget_from": "fault", "lost": 0, "zombie_s": 0.0,
                  "verdict": "pass"}
    assert failed["verdict"] == "fail" and stopped["verdict"] == "interrupted" and "write_gap_s" not in stopped


def test_the_history_keeps_one_line_per_run_and_drill(tmp_path):
    path = tmp_path / "history.jsonl"
    assert len(trend.append_history(path, lines("r1", record("switchover", 1.4)))) == 1
    assert trend.append_history(path, lines("r1", record("switchover", 1.4))) == []  # a nested run: same records
    trend.append_history(path, lines("r2", record("switchover", 1.5)))
    assert [(h["run"], h["write_gap_s"]) for h in trend.read_history(path)] == [("r1", 1.4), ("r2", 1.5)]


def test_a_run_is_judged_against_the_same_drill_target_and_profile_only():
    history = [line for i, gap in enumerate(STEADY) for line in lines(f"r{i}", record("switchover", gap))]
    history += lines("other-profile", record("switchover", 9.0, profile="tuned-sync"))
    history += lines("azure", record("switchover", 9.0), target="azure")
    history += lines("now", record("switchover", 2.3), record("kill-patroni", 3.0))
    by_drill = {t.drill: t for t in trend.trends(history, "now")}
    assert by_drill["switchover"].previous == tuple(STEADY) and by_drill["switchover"].regression
    assert by_drill["kill-patroni"].p95 is None


def test_the_trend_plot_draws_every_drill(tmp_path):
    judged = [trend.judge("switchover", 2.3, STEADY), trend.judge("kill-patroni", 3.0, [])]
    path = trend.plot_trend(judged, tmp_path / "trend.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
