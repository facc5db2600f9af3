"""``make bench-restore``'s pieces that need no stack: the disk estimate and the scales it admits,
the figures from raw timings (a restore that lost rows is a failure, never a figure), the run that
stops at the first failure, and the report's shape."""

from __future__ import annotations

import argparse

import pytest

from deployer import restore_bench as rb

BOOTSTRAP = "bootstrapping pg1 from the repository (pgbackrest --stanza=pgha --delta restore)"


def _measured(scale: int, rows: int | None = None) -> dict:
    return {"db_bytes": 160 * 10**6, "copy_bytes": 200 * 10**6, "init_s": 4.2, "backup_s": 9.5, "copy_s": 0.5,
            "steps": {"stopping Patroni on every node": 1.2, BOOTSTRAP: 8.0,
                      "taking a full backup of the restored cluster on pg1": 9.1, "total": 31.4},
            "rows": 100_000 * scale if rows is None else rows}


def test_the_estimate_counts_every_node_the_repository_the_copy_and_the_margin():
    assert rb.estimate_bytes(10, 3) == 15 * 10**6 * 10 * (3 + 3 + 1) + 4 * 10**9


def test_scales_that_fit_run_ascending_and_one_that_does_not_is_skipped_with_its_reason():
    free = rb.estimate_bytes(50, 3) + 10**9
    scales, skipped = rb.plan([50, 1, 10, 200, 10], free, 3)
    assert scales == [1, 10, 50]
    assert [s["scale"] for s in skipped] == [200]
    assert skipped[0]["estimate_bytes"] == rb.estimate_bytes(200, 3)
    assert skipped[0]["reason"].startswith("scale 200 needs about 25.0 GB (15 MB x 200 x (3 nodes")


def test_the_earlier_scales_backups_count_against_the_later_ones():
    """Negative control of the budget: free space exactly one scale's estimate admits it alone, not
    after another scale left its backup in the repository."""
    free = rb.estimate_bytes(50, 3)
    assert rb.plan([50], free, 3) == ([50], [])
    scales, skipped = rb.plan([10, 50], free, 3)
    assert scales == [10] and skipped[0]["free_bytes"] == free - 15 * 10**6 * 10 * 3


def test_the_figures_from_raw_timings():
    out = rb.entry(10, _measured(10))
    assert out == {"scale": 10, "db_bytes": 160 * 10**6, "copy_bytes": 200 * 10**6, "init_s": 4.2, "backup_s": 9.5,
                   "copy_s": 0.5, "restore_s": 8.0, "restore_total_s": 31.4,
                   "restore_steps_s": {"stopping Patroni on every node": 1.2, BOOTSTRAP: 8.0,
                                       "taking a full backup of the restored cluster on pg1": 9.1},
                   "restore_mb_per_s": 20.0,
                   "copy_mb_per_s": 400.0, "ratio": 16.0, "rows": 1_000_000}


@pytest.mark.parametrize("rows", [0, 999_999, 1_000_001])
def test_a_restore_whose_rows_differ_is_a_failure_not_a_figure(rows):
    out = rb.entry(10, _measured(10, rows))
    assert "error" in out and "restore_s" not in out and "restore_mb_per_s" not in out
    assert (out["rows"], out["expected_rows"]) == (rows, 1_000_000)
    assert f"{rows} rows in pgbench_accounts, 1000000 were written" in out["error"]


def test_the_first_failure_stops_the_run_and_the_rest_are_skipped():
    def measure(scale):
        if scale == 10:
            raise TimeoutError("the backup did not end")
        return _measured(scale)

    entries, skipped = rb.run([1, 10, 50], measure)
    assert [e["scale"] for e in entries] == [1, 10] and "restore_s" in entries[0]
    assert entries[1] == {"scale": 10, "error": "TimeoutError: the backup did not end"}
    assert skipped == [{"scale": 50, "reason": "not run: scale 10 failed first"}]


def test_lost_rows_stop_the_run_like_an_exception():
    entries, skipped = rb.run([1, 10], lambda scale: _measured(scale, rows=5))
    assert "error" in entries[0] and [s["scale"] for s in skipped] == [10]


def test_the_report_lists_the_failed_scales_beside_the_figures():
    entries = [rb.entry(1, _measured(1)), rb.entry(10, _measured(10, rows=0))]
    out = rb.report({"cores": 2}, entries, [{"scale": 50, "reason": "r"}])
    assert set(out) == {"machine", "units", "scales", "skipped", "failed"}
    assert out["failed"] == [10] and out["scales"] == entries and out["machine"] == {"cores": 2}


def test_without_a_bootstrap_step_there_is_no_restore_figure():
    with pytest.raises(ValueError, match="expected one bootstrap step"):
        rb.bootstrap_seconds({"stopping Patroni on every node": 1.0, "total": 2.0})


def test_pgbackrest_settings_are_read_from_the_configurations_lines():
    assert rb.settings("process-max=1\ncompress-type=lz4\n") == {"process-max": "1", "compress-type": "lz4"}


def test_scales_are_positive_integers():
    assert rb._scales("1,10,50") == [1, 10, 50]
    with pytest.raises(argparse.ArgumentTypeError):
        rb._scales("0,10")
