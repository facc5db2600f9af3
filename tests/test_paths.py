"""Run directories: one per invocation of ``make test``, ``make drill`` or the pipeline, every
pytest run it starts under it (``PGHA_INVOCATION_DIR``), ``reports/latest`` pointing at it."""

from __future__ import annotations

import pytest

from deployer import paths


@pytest.fixture
def reports(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "REPORTS", tmp_path / "reports")
    monkeypatch.delenv(paths.INVOCATION_ENV, raising=False)
    return tmp_path / "reports"


def test_without_an_invocation_each_run_is_its_own_directory_under_reports(reports, monkeypatch):
    monkeypatch.setenv(paths.RUN_ENV, "20261205-070000-1")
    run = paths.run_reports()
    paths.point_latest(run)
    assert run == reports / "20261205-070000-1" and run.is_dir()
    assert (reports / "latest").resolve() == run


def test_the_runs_of_one_invocation_go_under_it_and_latest_points_at_it(reports, monkeypatch):
    monkeypatch.setenv(paths.INVOCATION_ENV, "reports/test-20261205-070000")  # relative to the repository
    monkeypatch.setattr(paths, "REPO", reports.parent)
    runs = []
    for run_id in ("20261205-070001-11", "20261205-070002-12"):  # the detection run's inner pytest runs
        monkeypatch.setenv(paths.RUN_ENV, run_id)
        runs.append(paths.run_reports())
        paths.point_latest(runs[-1])
    invocation = reports / "test-20261205-070000"
    assert [r.parent for r in runs] == [invocation] * 2
    assert sorted(p.name for p in reports.iterdir()) == ["latest", "test-20261205-070000"]
    assert (reports / "latest").resolve() == invocation
