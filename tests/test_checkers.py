"""Checkers over synthetic histories: each verdict both ways."""

import pytest

from deployer.drills.checkers import check_set, check_single_writer, check_write_gap, throughput
from load.history import Op


def w(key, start, end, outcome="ok", server="a", tl=None):
    return Op("write", key, start, end, outcome, server if outcome == "ok" else None, None, tl)


HISTORY = [w("k1", 0.0, 0.1), w("k2", 0.2, 0.3), w("k3", 0.4, 0.5, "fail"), w("k4", 0.6, 0.7, "unknown"),
           w("k5", 0.8, 0.9, "unknown"), Op("read", "k1", 1.0, 1.1, "ok", "b")]


def test_set_valid_when_every_acknowledged_write_is_there():
    v = check_set(HISTORY, {"k1", "k2", "k4"})
    assert v.valid, v.summary
    assert (v.ok, v.fail, v.unknown) == (2, 1, 2)
    assert v.recovered == {"k4"} and v.never_applied == {"k5"} and not v.lost and not v.unexpected


def test_set_reports_a_lost_write():
    v = check_set(HISTORY, {"k1", "k4"})
    assert not v.valid and v.lost == {"k2"} and "1 lost (k2)" in v.summary


def test_set_reports_an_unexpected_key():
    v = check_set(HISTORY, {"k1", "k2", "ghost"})
    assert not v.valid and v.unexpected == {"ghost"} and not v.lost


def test_set_reports_a_failed_write_that_landed_anyway():
    v = check_set(HISTORY, {"k1", "k2", "k3"})
    assert not v.valid and v.failed_present == {"k3"}


def steady(until, every=0.1, server="a", tl=None, start=0.0, prefix="s"):
    t, ops = start, []
    while t < until - 1e-9:
        ops.append(w(f"{prefix}{t:.2f}", t, t + 0.05, server=server, tl=tl))
        t += every
    return ops


def test_write_gap_measures_from_last_ack_before_the_fault_to_the_first_after():
    history = (steady(5.0) + [w("x1", 5.0, 5.5, "fail"), w("x2", 6.0, 7.0, "unknown")]
               + steady(12.0, start=8.0, server="b", prefix="t"))
    v = check_write_gap(history, fault_at=5.0, heal_at=10.0)
    assert v.valid, v.summary
    assert v.gap_start == pytest.approx(4.95) and v.gap_end == pytest.approx(8.05)
    assert v.gap_s == pytest.approx(3.1)
    assert v.first_failed_at == pytest.approx(5.5) and v.first_ok_after_fault_at == pytest.approx(8.05)
    assert v.resumed_before_heal is True
    assert not check_write_gap(history, 5.0, budget_s=3.0).valid
    assert check_write_gap(history, 5.0, budget_s=3.5).valid
    assert check_write_gap(history, 5.0, heal_at=7.0).resumed_before_heal is False


def test_write_gap_invalid_when_writes_never_resume():
    history = steady(5.0) + [w("x1", 5.0, 7.0, "fail"), w("x2", 7.0, 9.0, "fail")]
    v = check_write_gap(history, fault_at=5.0)
    assert not v.valid and v.first_ok_after_fault_at is None
    assert v.gap_s == pytest.approx(9.0 - 4.95) and "never resumed" in v.summary


def test_write_gap_until_ignores_later_faults():
    history = steady(5.0) + steady(20.0, start=6.0, prefix="t") + steady(40.0, start=30.0, prefix="u")
    assert check_write_gap(history, 5.0).gap_s == pytest.approx(10.1)  # the later, unrelated gap
    assert check_write_gap(history, 5.0, until=25.0).gap_s == pytest.approx(1.1)


def test_single_writer_valid_across_a_clean_failover_even_with_a_slow_last_ack():
    # a's last write committed before the failover but its answer arrived late (overlaps b's first)
    history = steady(5.0, tl=1) + [w("late", 4.9, 6.5, tl=1)] + steady(10.0, start=6.0, server="b", tl=2, prefix="t")
    v = check_single_writer(history)
    assert v.valid, v.summary
    assert v.epochs == (("a", 1), ("b", 2)) and not v.overlaps


def test_single_writer_reports_the_old_primary_acknowledging_after_the_new_one():
    stale = w("stale", 7.0, 7.1, server="a", tl=1)
    history = steady(5.0, tl=1) + steady(10.0, start=6.0, server="b", tl=2, prefix="t") + [stale]
    v = check_single_writer(history)
    assert not v.valid and "Two writable primaries" in v.summary
    assert len(v.overlaps) == 1
    newer, old = v.overlaps[0]
    assert old == stale and newer.server == "b" and newer.end < stale.start


def test_single_writer_reports_a_timeline_served_by_two_servers():
    history = steady(5.0, tl=1) + steady(10.0, start=6.0, server="b", tl=1, prefix="t")
    v = check_single_writer(history)
    assert not v.valid and v.forks == (1,)


def test_single_writer_allows_a_switch_back_when_timelines_say_so():
    history = (steady(5.0, tl=1) + steady(10.0, start=6.0, server="b", tl=2, prefix="t")
               + steady(15.0, start=11.0, server="a", tl=3, prefix="u"))
    assert check_single_writer(history).valid


def test_single_writer_without_timelines_reports_interleaved_servers():
    history = [w("1", 0.0, 0.1, server="a"), w("2", 0.2, 0.3, server="b"), w("3", 0.4, 0.5, server="a"),
               w("4", 0.6, 0.7, server="b")]
    v = check_single_writer(history)
    assert not v.valid and [(q.key, r.key) for q, r in v.overlaps] == [("2", "3")]
    assert check_single_writer([history[0], history[1], history[3]]).valid


def test_throughput_counts_per_bucket_including_empty_ones():
    history = [w("1", 0.0, 0.1), w("2", 0.1, 0.5), w("3", 0.5, 0.9, "fail"), w("4", 2.0, 2.5, "unknown"),
               w("5", 2.5, 3.05)]
    t = throughput(history, bucket_s=1.0)
    assert [(b.ok, b.fail, b.unknown) for b in t.buckets] == [(2, 1, 0), (0, 0, 0), (0, 0, 1), (1, 0, 0)]
    assert t.buckets[0].start == 0.0 and "2 bucket(s) without" in t.summary
    assert throughput([]).buckets == ()
