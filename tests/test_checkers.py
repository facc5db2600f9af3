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


# ----- the sentences a person reads: exact, so a verdict never says less than it found -----

def test_set_summaries_name_every_count_and_problem():
    assert check_set(HISTORY, {"k1", "k2", "k4"}).summary == (
        "2 ok, 1 failed, 2 unknown writes: none lost, none unexpected; 1 unknown recovered, 1 never applied.")
    many = [w(f"k{i}", i, i + 0.1) for i in range(5)]
    assert check_set(many + [w("x", 9, 9.1, "fail")], {"ghost", "x"}).summary == (
        "5 ok, 1 failed, 0 unknown writes: 5 lost (k0, k1, k2, ...); 1 unexpected (ghost); "
        "1 failed but present (x); 0 unknown recovered, 0 never applied.")


def test_write_gap_summaries_say_when_writes_failed_and_resumed():
    history = steady(5.0) + [w("f", 5.0, 5.5, "fail")] + steady(12.0, start=8.0, prefix="b")
    v = check_write_gap(history, 5.0, 7.0, budget_s=4.0)
    assert v.summary == ("Longest write gap 3.10 s (budget 4.0 s); first failure +0.50 s, first acknowledged "
                         "write +3.05 s after the fault, after the heal.")
    assert v.valid and (v.gap_start, v.gap_end) == pytest.approx((4.95, 8.05))
    never = check_write_gap(steady(5.0), 5.0, budget_s=1.0, until=12.0)
    assert not never.valid and never.summary == (
        "Writes never resumed after the fault: no acknowledged write for 7.05 s until the end (budget 1.0 s).")


def test_single_writer_summaries_name_epochs_and_overlaps():
    ok = steady(1.0, server="a", tl=1) + steady(2.0, server="b", tl=2, start=1.05, prefix="b")
    assert check_single_writer(ok).summary == (
        f"One writable primary at a time: {len(ok)} acknowledged writes over 2 epoch(s) a@1 -> b@2.")
    stale = ok + [w("late", 1.5, 1.6, server="a", tl=1)]
    v = check_single_writer(stale)
    assert v.summary.startswith("Two writable primaries: 1 write(s) acknowledged by an older primary after a newer "
                                "one had acknowledged (first: a at 1.600 after b at ")


def test_throughput_counts_every_outcome_per_aligned_bucket():
    history = [w("a", 0.0, 0.2), w("b", 0.3, 0.6, "fail"), w("c", 1.1, 1.4, "unknown"), w("d", 3.0, 3.5)]
    t = throughput(history, 1.0)
    assert [(b.start, b.ok, b.fail, b.unknown) for b in t.buckets] == [
        (0.0, 1, 1, 0), (1.0, 0, 0, 1), (2.0, 0, 0, 0), (3.0, 1, 0, 0)]
    assert t.summary == "4 writes over 4 bucket(s) of 1 s: peak 1 ok per bucket, 2 bucket(s) without an acknowledged write."
    assert throughput([], 1.0).summary == "No writes." and throughput([], 1.0).buckets == ()


def test_throughput_buckets_of_half_a_second_start_on_a_multiple():
    history = [w("a", 10.0, 10.3), w("b", 10.4, 10.6), w("c", 10.7, 10.8, "fail"), w("d", 11.0, 11.7)]
    t = throughput(history, 0.5)
    assert t.bucket_s == 0.5
    assert [(b.start, b.ok, b.fail) for b in t.buckets] == [(10.0, 1, 0), (10.5, 1, 1), (11.0, 0, 0), (11.5, 1, 0)]
    assert t.summary.endswith("peak 1 ok per bucket, 1 bucket(s) without an acknowledged write.")


def test_single_writer_without_timelines_ranks_servers_by_first_appearance():
    ok = steady(1.0, server="a") + steady(2.0, server="b", start=1.05, prefix="b")
    v = check_single_writer(ok)
    assert v.valid and v.epochs == (("a", None), ("b", None)) and v.summary.endswith("2 epoch(s) a -> b.")
    assert not check_single_writer(ok + [w("late", 1.5, 1.6, server="a")]).valid


def test_write_gap_boundaries_count_a_write_ending_at_the_fault_as_before_it():
    history = [w("a", 4.0, 5.0), w("b", 7.0, 8.0)]
    v = check_write_gap(history, 5.0, heal_at=8.0, budget_s=3.0)
    assert (v.gap_start, v.gap_end, v.gap_s) == (5.0, 8.0, 3.0) and v.valid, "a gap equal to the budget is within it"
    assert v.resumed_before_heal is False and v.budget_s == 3.0 and v.first_failed_at is None
    assert check_write_gap(history, 5.0, until=7.5).first_ok_after_fault_at is None
