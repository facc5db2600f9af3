"""Checkers over synthetic histories: each verdict both ways."""

import pytest

from deployer.drills.checkers import (
    check_converged,
    check_point_in_time,
    check_restore_latest,
    check_sequential_gap,
    check_set,
    check_single_writer,
    check_stale_reads,
    check_write_gap,
    check_zombie,
    error_class,
    split_gap,
    throughput,
)
from load.history import SEQUENTIAL_CLIENTS, Op


def w(key, start, end, outcome="ok", server="a", tl=None, client="locust", error=None):
    return Op("write", key, start, end, outcome, server if outcome == "ok" else None, error, tl, client)


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


# ----- clients: the frontend's writes measure availability, direct ones a zombie, all count for the set -----

def test_set_counts_a_lost_direct_write_apart_and_requires_it_by_default():
    history = [w("k1", 0.0, 0.1), w("s1", 0.2, 0.3, client="sequential"), w("d1", 0.4, 0.5, client="direct")]
    v = check_set(history, {"k1", "s1"})
    assert not v.valid and v.lost_direct == {"d1"} and not v.lost
    assert v.summary == ("3 ok, 0 failed, 0 unknown writes: 1 acknowledged direct writes lost (zombie primary) (d1); "
                         "0 unknown recovered, 0 never applied.")
    tolerated = check_set(history, {"k1", "s1"}, require_direct=False)
    assert tolerated.valid and tolerated.lost_direct == {"d1"}
    assert "1 acknowledged direct writes lost (zombie primary, not required) (d1)" in tolerated.summary
    assert check_set(history, {"k1", "s1", "d1"}).valid


@pytest.mark.parametrize("client", SEQUENTIAL_CLIENTS)
def test_set_without_direct_requirement_still_fails_on_a_lost_frontend_write(client):
    history = [w("k1", 0.0, 0.1), w("s1", 0.2, 0.3, client=client), w("d1", 0.4, 0.5, client="direct")]
    v = check_set(history, {"k1", "d1"}, require_direct=False)
    assert not v.valid and v.lost == {"s1"} and not v.lost_direct and "1 lost (s1)" in v.summary


@pytest.mark.parametrize("client", SEQUENTIAL_CLIENTS)
def test_write_gap_and_single_writer_ignore_direct_writes(client):
    gap = steady(5.0) + steady(12.0, start=8.0, prefix="t")
    direct = [w(f"d{i}", 5.0 + i / 4, 5.1 + i / 4, client="direct") for i in range(12)]
    assert check_write_gap(gap + direct, 5.0).gap_s == pytest.approx(3.1)
    assert check_write_gap(gap + [w("x", 6.0, 6.1, client=client)], 5.0).gap_s == pytest.approx(1.95)
    assert check_write_gap(gap + [w("x", 6.0, 6.1, client="locust")], 5.0).gap_s == pytest.approx(1.95)
    two = steady(5.0, tl=1) + steady(10.0, start=6.0, server="b", tl=2, prefix="t")
    assert check_single_writer(two + [w("z", 7.0, 7.1, tl=1, client="direct")]).valid
    v = check_single_writer(two + [w("z", 7.0, 7.1, tl=1, client=client)])
    assert not v.valid and v.overlaps[0][1].key == "z"


def d(key, start, end, server, tl=None, outcome="ok"):
    return w(key, start, end, outcome, server, tl, "direct")


ZOMBIE = [d("a1", 0.0, 1.0, "a", 1), d("a2", 2.0, 3.0, "a", 1), d("b1", 3.5, 4.0, "b", 2), d("a3", 4.5, 5.0, "a", 1),
          d("a4", 6.0, 7.0, "a", 1), d("b2", 7.5, 8.0, "b", 2)]


def test_zombie_valid_across_a_clean_failover():
    history = ZOMBIE[:3] + ZOMBIE[5:]
    v = check_zombie(history)
    assert v.valid and (v.zombie_primary_s, v.zombie_writes, v.servers) == (0.0, 0, ())
    assert v.epochs == (("a", 1), ("b", 2))
    assert v.summary == "No zombie primary: 4 acknowledged direct writes over 2 epoch(s) a@1 -> b@2."


def test_zombie_measures_the_old_primary_acknowledging_after_the_new_one():
    v = check_zombie(ZOMBIE)
    assert not v.valid and (v.zombie_primary_s, v.zombie_writes, v.servers) == (3.0, 2, ("a",))
    assert v.summary == ("Zombie primary: a still acknowledged direct writes 3.00 s after b@2 took over; "
                         "2 stale acknowledged direct write(s) from a.")


def test_zombie_boundary_an_old_ack_ending_with_the_new_first_ack_is_not_stale():
    assert check_zombie(ZOMBIE[:3] + [d("a3", 3.5, 4.0, "a", 1)]).valid
    v = check_zombie(ZOMBIE[:3] + [d("a3", 3.5, 4.25, "a", 1)])
    assert not v.valid and (v.zombie_primary_s, v.zombie_writes) == (0.25, 1)


def test_zombie_promotion_starts_the_newer_epoch_before_its_first_direct_ack():
    history = ZOMBIE[:3]  # a's last ack ends at 3.0, b's first at 4.0
    assert check_zombie(history).valid and check_zombie(history, promoted_at=3.0).valid
    v = check_zombie(history, promoted_at=2.5)
    assert not v.valid and (v.zombie_primary_s, v.zombie_writes) == (0.5, 1)
    assert check_zombie(ZOMBIE, promoted_at=5.0).zombie_primary_s == 3.0  # a later promotion changes nothing


def test_zombie_promotion_applies_to_the_newest_epoch_only():
    history = [d("a1", 0.0, 1.0, "a", 1), d("b1", 3.0, 4.0, "b", 2), d("c1", 6.0, 7.0, "c", 3)]
    assert check_zombie(history).valid
    v = check_zombie(history, promoted_at=3.5)  # c promoted at 3.5: b's ack at 4.0 was stale
    assert (v.zombie_primary_s, v.zombie_writes, v.servers) == (0.5, 1, ("b",))


def test_zombie_names_the_longest_window_first():
    history = [d("m1", 0.0, 1.0, "m", 1), d("a1", 2.0, 3.0, "a", 2), d("c1", 4.0, 5.0, "c", 3),
               d("a2", 5.5, 6.0, "a", 2), d("m2", 6.5, 7.0, "m", 1)]
    v = check_zombie(history)
    assert (v.zombie_primary_s, v.zombie_writes, v.servers) == (4.0, 2, ("m", "a"))
    assert v.summary == ("Zombie primary: m still acknowledged direct writes 4.00 s after a@2 took over; "
                         "2 stale acknowledged direct write(s) from m, a.")


def test_zombie_is_superseded_from_the_earliest_start_of_any_newer_epoch():
    history = [d("a1", 0.0, 1.0, "a", 1), d("c1", 2.0, 3.0, "c", 2), d("b1", 4.0, 5.0, "b", 3), d("a2", 6.0, 6.5, "a", 1)]
    v = check_zombie(history)
    assert (v.zombie_primary_s, v.zombie_writes, v.servers) == (3.5, 1, ("a",)) and "after c@2 took over" in v.summary


def test_zombie_without_timelines_ranks_servers_by_first_appearance():
    history = [d("a1", 0.0, 1.0, "a", 7), d("b1", 2.0, 3.0, "b"), d("a2", 4.0, 5.0, "a", 7)]  # one lacks a timeline
    v = check_zombie(history)
    assert not v.valid and (v.zombie_primary_s, v.servers, v.epochs) == (2.0, ("a",), (("a", None), ("b", None)))
    assert "after b took over" in v.summary


def test_zombie_reads_only_acknowledged_direct_writes():
    frontend = [w(op.key, op.start, op.end, server=op.server, tl=op.timeline) for op in ZOMBIE]
    v = check_zombie(frontend)
    assert v.valid and v.epochs == () and v.summary == "No zombie primary: 0 acknowledged direct writes."
    failed = ZOMBIE[:3] + [Op("write", "a3", 4.5, 5.0, "fail", "a", "ReadOnlySqlTransaction", 1, "direct"),
                           Op("write", "a4", 6.0, 7.0, "unknown", "a", None, 1, "direct")]
    assert check_zombie(failed).valid


def r(key, start, stale=True, outcome="ok", server="b"):
    return Op("read", key, start, start + 0.25, outcome, server, "stale" if stale else None)


def test_stale_reads_within_the_visibility_bound_are_lag():
    history = [w("k1", 0.0, 1.0), w("k2", 0.0, 2.0), r("k1", 1.5), r("k2", 3.0), r("k1", 4.0, stale=False)]
    v = check_stale_reads(history, visible_s=1.0)
    assert v.valid and (v.reads, v.stale, v.max_age_s, v.too_stale, v.unacknowledged) == (3, 2, 1.0, (), 0)
    assert v.visible_s == 1.0
    assert v.summary == "3 reads, 2 stale, all within 1 s of the acknowledgement (oldest 1.00 s)."


def test_stale_reads_older_than_the_bound_are_invalid_and_named():
    history = ([w(f"k{i}", 0.0, 1.0) for i in range(5)] + [r(f"k{i}", 3.0 + i / 4, server=f"n{i}") for i in range(5)]
               + [r("k0", 1.5)])
    v = check_stale_reads(history, visible_s=2.25)
    assert not v.valid and (v.reads, v.stale, v.max_age_s) == (6, 6, 3.0)
    assert v.too_stale == (("k4", "n4", 3.0), ("k3", "n3", 2.75), ("k2", "n2", 2.5))
    assert v.summary == ("6 reads, 6 stale: 3 still missing more than 2.25 s after the acknowledgement "
                         "(k4 on n4 (3.00 s), k3 on n3 (2.75 s), k2 on n2 (2.50 s)).")
    assert check_stale_reads(history, visible_s=2.0).summary.endswith("k2 on n2 (2.50 s), ...).")


def test_stale_reads_leave_unacknowledged_keys_and_failed_reads_unjudged():
    history = [w("k1", 0.0, 1.0, "unknown"), w("k2", 0.0, 1.0, "fail"), w("k3", 5.0, 6.0),
               r("k1", 9.0), r("k2", 9.0), r("k3", 5.5), r("k3", 9.0, outcome="fail")]
    v = check_stale_reads(history, visible_s=1.0)
    assert v.valid and (v.reads, v.stale, v.unacknowledged, v.max_age_s) == (3, 3, 2, 0.0)
    assert v.summary == ("3 reads, 3 stale, all within 1 s of the acknowledgement (oldest 0.00 s); "
                         "2 of keys never acknowledged (not judged).")


def test_stale_reads_age_from_the_first_acknowledgement_of_a_key():
    history = [w("k", 0.0, 1.0), w("k", 2.0, 4.0), r("k", 4.5)]
    assert check_stale_reads(history, visible_s=3.5).max_age_s == 3.5
    assert not check_stale_reads(history, visible_s=3.25).valid


def q(key, start, end, outcome="fail", error=None, client="sequential"):
    return w(key, start, end, outcome, client=client, error=error)


TIMEOUT = "ConnectionTimeout: connection timeout expired"
READ_ONLY = "ReadOnlySqlTransaction: cannot execute INSERT in a read-only transaction"
SEQUENTIAL = [q("s0", 4.0, 4.5, "ok"), q("s1", 5.0, 7.0, error=TIMEOUT), q("s2", 7.25, 7.5, error=READ_ONLY),
              q("s3", 7.5, 8.0, error=READ_ONLY), q("s4", 8.25, 8.75, error=READ_ONLY), q("s5", 9.0, 9.5, "ok")]


def test_sequential_gap_says_where_the_time_went():
    after = q("s6", 9.5, 10.0, error=READ_ONLY)  # starts as the gap ends: not in it
    v = check_sequential_gap(SEQUENTIAL + [after, w("x", 6.0, 6.1), w("y", 6.0, 6.1, client="direct")], 5.0,
                             budget_s=5.0)
    assert v.valid and v.budget_s == 5.0, "a gap equal to the budget is within it"
    assert (v.gap_s, v.gap_start, v.gap_end, v.first_ok_after_fault_at) == (5.0, 4.5, 9.5, 9.5)
    assert v.by_error == {"connect timeout": 2.0, "read-only": 1.25, "acknowledged": 0.5}
    assert v.attempts == {"connect timeout": 1, "read-only": 3, "acknowledged": 1}
    assert v.by_outcome == {"fail": 3.25, "ok": 0.5} and v.idle_s == 1.25
    assert v.summary == ("One sequential client: 5.00 s without an acknowledged write (budget 5.0 s): 2.00 s in 1 "
                         "connect timeout attempt(s), 1.25 s in 3 read-only attempt(s), 0.50 s in 1 acknowledged "
                         "attempt(s), 1.25 s between attempts.")
    assert not check_sequential_gap(SEQUENTIAL, 5.0, budget_s=4.99).valid


def test_sequential_gap_clips_attempts_to_the_gap():
    history = [q("s1", 4.0, 6.0, "unknown", "TimeoutError: no answer within 2 s"), q("s2", 7.0, 7.5, "ok")]
    v = check_sequential_gap(history, 5.0)
    assert v.valid and (v.gap_start, v.gap_end, v.gap_s) == (5.0, 7.5, 2.5)
    assert v.by_error == {"timeout": 1.0, "acknowledged": 0.5} and v.by_outcome == {"unknown": 1.0, "ok": 0.5}
    assert v.idle_s == 1.0 and v.attempts == {"timeout": 1, "acknowledged": 1}


def test_sequential_gap_invalid_when_writes_never_resume_or_never_happened():
    v = check_sequential_gap(SEQUENTIAL[:3], 5.0, until=10.0)
    assert not v.valid and v.first_ok_after_fault_at is None and v.gap_s == 5.5 and v.budget_s is None
    assert v.summary == ("One sequential client: 5.50 s without an acknowledged write after the fault, until the "
                         "end: 2.00 s in 1 connect timeout attempt(s), 0.25 s in 1 read-only attempt(s), "
                         "3.25 s between attempts.")
    none = check_sequential_gap([w("x", 1.0, 2.0)], 5.0, budget_s=3.0)
    assert not none.valid and none.summary == "No sequential writes in the history (budget 3.0 s)."
    empty = check_sequential_gap([], 5.0)
    assert not empty.valid and (empty.gap_s, empty.idle_s) == (0.0, 0.0) and check_write_gap([], 5.0).gap_s == 0.0
    upto = check_sequential_gap(SEQUENTIAL[:3], 5.0, until=7.5)  # an attempt ending at ``until`` is in
    assert upto.by_error == {"connect timeout": 2.0, "read-only": 0.25} and upto.gap_s == 3.0


SHORT = "sequential-short-timeout"
#: The short-timeout client beside ``SEQUENTIAL``: its last write before the fault ends at 3.0 (the
#: sequential client's at 4.5), one 2 s operation timeout, acknowledged again at 7.25.
SHORT_TIMEOUT = [q("t0", 2.5, 3.0, "ok", client=SHORT),
                 q("t1", 5.0, 7.0, "unknown", "TimeoutError: no answer within 2 s", client=SHORT),
                 q("t2", 7.0, 7.25, "ok", client=SHORT)]


def test_sequential_gap_of_one_client_counts_its_own_writes_only():
    both = SEQUENTIAL + SHORT_TIMEOUT
    short = check_sequential_gap(both, 5.0, client=SHORT)
    # the sequential client's writes would end the gap's start at 4.5 and add a connect timeout to it
    assert short.valid and (short.gap_start, short.gap_end, short.gap_s) == (3.0, 7.25, 4.25)
    assert short.by_error == {"timeout": 2.0, "acknowledged": 0.25} and short.attempts == {"timeout": 1, "acknowledged": 1}
    assert short.by_outcome == {"unknown": 2.0, "ok": 0.25} and short.idle_s == 2.0
    assert short.summary == ("One sequential-short-timeout client: 4.25 s without an acknowledged write: 2.00 s in 1 "
                             "timeout attempt(s), 0.25 s in 1 acknowledged attempt(s), 2.00 s between attempts.")
    # and the short-timeout client's ok at 7.25 would split the sequential client's 5 s gap
    assert check_sequential_gap(both, 5.0) == check_sequential_gap(SEQUENTIAL, 5.0)
    assert check_sequential_gap(both, 5.0, client="sequential").gap_s == 5.0


def test_sequential_gap_of_a_client_without_writes_is_invalid_and_only_sequential_clients_have_one():
    none = check_sequential_gap(SEQUENTIAL, 5.0, client=SHORT)
    assert not none.valid and none.first_ok_after_fault_at is None and none.attempts == {}
    assert none.summary == "No sequential-short-timeout writes in the history."
    assert check_sequential_gap(SHORT_TIMEOUT, 5.0).summary == "No sequential writes in the history."
    with pytest.raises(ValueError, match="'locust' is not a sequential client; they are sequential, "
                                         "sequential-short-timeout"):
        check_sequential_gap(SEQUENTIAL, 5.0, client="locust")


@pytest.mark.parametrize("outcome, error, expected", [
    ("ok", None, "acknowledged"),
    ("fail", TIMEOUT, "connect timeout"),
    ("fail", "OperationalError: connection failed: timeout expired", "connect timeout"),
    ("fail", 'OperationalError: connection failed: connection to server at "10.0.1.4", port 5000 failed: '
             "Connection refused", "connection refused"),
    ("fail", READ_ONLY, "read-only"),
    ("fail", "CannotConnectNow: the database system is starting up", "starting or stopping"),
    ("fail", "CannotConnectNow: the database system is shutting down", "starting or stopping"),
    ("unknown", "OperationalError: server closed the connection unexpectedly", "connection lost"),
    ("unknown", "AdminShutdown: terminating connection due to administrator command", "connection lost"),
    ("unknown", "ConnectionFailure: x", "connection lost"),
    ("unknown", "OperationalError: consuming input failed: EOF", "connection lost"),
    ("unknown", "InterfaceError: the connection is lost", "connection lost"),
    ("unknown", "TimeoutError: no answer within 10 s", "timeout"),
    ("fail", "QueryCanceled: canceling statement due to statement timeout", "timeout"),
    ("fail", "OSError: timed out", "timeout"),
    ("fail", "UndefinedTable: relation does not exist", "other"),
    ("fail", None, "other"),
])
def test_error_class(outcome, error, expected):
    assert error_class(q("k", 0.0, 1.0, outcome, error)) == expected


GAP = check_write_gap([w("a", 99.5, 99.75), w("b", 120.0, 121.25)], 100.0)
EVENTS = {"leader_key_gone": 115.25, "promoted": 117.25, "haproxies_routed": 118.25, "lb_routed": 121.25}


def test_split_gap_into_detection_election_haproxy_and_load_balancer():
    p = split_gap(100.0, EVENTS, GAP)
    assert p.valid and p.gap_s == 21.5 and p.other_s == 0.25
    assert p.parts == {"detection": 15.25, "election": 2.0, "node_haproxy": 1.0, "load_balancer": 3.0}
    assert (p.unobserved, p.out_of_order, p.slowest) == ((), (), "detection")
    assert p.summary == ("Write gap 21.50 s: detection 15.25 s, election 2.00 s, node HAProxy 1.00 s, "
                         "load balancer 3.00 s, other 0.25 s (slowest: detection).")


def test_split_gap_folds_a_missing_event_into_the_next_part():
    p = split_gap(100.0, {**EVENTS, "promoted": None, "haproxies_routed": 117.0}, GAP)
    assert p.valid and p.parts == {"detection": 15.25, "node_haproxy": 1.75, "load_balancer": 4.25}
    assert p.unobserved == ("election",)
    assert p.summary.endswith("load balancer 4.25 s, other 0.25 s (slowest: detection); unobserved: election.")
    last = split_gap(99.75, {"leader_key_gone": 101.0, "lb_routed": 121.25}, GAP)
    assert last.parts == {"detection": 1.25, "load_balancer": 20.25} and last.slowest == "load_balancer"
    assert last.unobserved == ("election", "node_haproxy") and last.other_s == 0.0
    assert last.summary == ("Write gap 21.50 s: detection 1.25 s, load balancer 20.25 s (slowest: load balancer); "
                            "unobserved: election, node HAProxy.")


def test_split_gap_reports_events_out_of_order_instead_of_negative_parts():
    p = split_gap(100.0, {**EVENTS, "promoted": 113.25}, GAP)
    assert not p.valid and p.out_of_order == ("election",) and "election" not in p.parts
    assert p.parts["node_haproxy"] == 3.0 and min(p.parts.values()) >= 0
    assert p.summary.endswith("; out of order: promoted observed 2.00 s before leader_key_gone.")
    early = split_gap(100.0, {"leader_key_gone": 98.0, "lb_routed": 101.0}, GAP)
    assert not early.valid and early.parts == {"load_balancer": 1.0}
    assert early.summary == ("Write gap 21.50 s: load balancer 1.00 s, other 20.50 s (slowest: load balancer); "
                             "unobserved: election, node HAProxy; out of order: leader_key_gone observed 2.00 s "
                             "before the fault.")


def test_split_gap_boundaries_simultaneous_events_and_none_observed():
    p = split_gap(100.0, {"leader_key_gone": 100.0, "promoted": 100.0}, GAP)
    assert p.valid and p.parts == {"detection": 0.0, "election": 0.0} and p.slowest == "detection"
    none = split_gap(100.0, {}, GAP)
    assert none.valid and (none.parts, none.slowest, none.other_s) == ({}, "", 21.5)
    assert none.summary == ("Write gap 21.50 s: no event observed, other 21.50 s; "
                            "unobserved: detection, election, node HAProxy, load balancer.")
    with pytest.raises(ValueError, match=r"^unknown gap event\(s\) leader_gone, routed; known: leader_key_gone, "
                                         r"promoted, haproxies_routed, lb_routed$"):
        split_gap(100.0, {"routed": 101.0, "leader_gone": 101.0}, GAP)


def test_split_gap_omits_a_rest_that_rounds_to_zero():
    p = split_gap(99.754, {"lb_routed": 121.25}, GAP)
    assert p.other_s == pytest.approx(0.004) and p.summary == (
        "Write gap 21.50 s: load balancer 21.50 s (slowest: load balancer); unobserved: detection, election, "
        "node HAProxy.")


def test_converged_within_the_budget_boundary_included():
    v = check_converged(10.0, 40.0, 30.0)
    assert v.valid and (v.duration_s, v.budget_s) == (30.0, 30.0)
    assert v.summary == "Converged 30.00 s after the heal (within the budget 30.0 s)."
    over = check_converged(10.0, 40.5, 30.0)
    assert not over.valid and over.summary == "Converged 30.50 s after the heal (over the budget 30.0 s)."
    assert check_converged(10.0, 10.0, 0.0).valid


def test_converged_never_or_before_the_heal_is_invalid():
    never = check_converged(10.0, None, 30.0)
    assert never.valid is False and never.duration_s is None and never.budget_s == 30.0
    assert never.summary == "Never converged after the heal (budget 30.0 s)."
    early = check_converged(10.0, 9.0, 30.0)
    assert early.valid is False and early.duration_s is None and early.budget_s == 30.0
    assert early.summary == "Convergence observed 1.00 s before the heal: out of order (budget 30.0 s)."


# ----- boundaries of the shared gap points and the older checkers' sentences -----

def test_write_gap_points_a_write_starting_at_the_fault_resumes_and_only_the_last_ack_before_counts():
    v = check_write_gap([w("a", 1.0, 1.5), w("b", 4.0, 4.75), w("c", 5.0, 6.0)], 5.0)
    assert v.valid and (v.gap_start, v.gap_end, v.first_ok_after_fault_at) == (4.75, 6.0, 6.0)
    assert check_write_gap([w("a", 4.0, 5.0), w("b", 7.0, 8.0)], 5.0, until=8.0).valid, "an ack ending at until is in"
    assert check_write_gap([w("z", 3.0, 4.0), w("a", 4.0, 5.0), w("b", 7.0, 8.0)], 5.0).gap_start == 5.0


def test_write_gap_sentences_without_budget_heal_or_failure_and_with_an_early_resume():
    history = [w("a", 4.0, 4.5), w("f", 4.5, 5.0, "fail"), w("b", 6.0, 7.0)]
    assert check_write_gap(history, 5.0).summary == (
        "Longest write gap 2.50 s; first failure +0.00 s, first acknowledged write +2.00 s after the fault.")
    assert check_write_gap(history[::2], 5.0, heal_at=8.0).summary == (
        "Longest write gap 2.50 s; first failure none, first acknowledged write +2.00 s after the fault, before the heal.")


def test_sample_elides_only_beyond_three():
    assert "(k0, k1, k2)" in check_set([w(f"k{i}", i, i + 0.1) for i in range(3)], set()).summary


def test_single_writer_boundaries_and_the_first_newer_write_named():
    assert check_single_writer([]).valid and check_single_writer([]).epochs == ()
    touching = [w("a1", 0.0, 1.0, tl=1), w("b1", 1.0, 2.0, server="b", tl=2), w("a2", 2.0, 3.0, tl=1)]
    assert check_single_writer(touching).valid, "b1 ended exactly as a2 started: they may have overlapped"
    after = check_single_writer(touching[:2] + [w("a2", 2.25, 3.0, tl=1)])
    assert [(q.key, r.key) for q, r in after.overlaps] == [("b1", "a2")]
    two = [w("b1", 1.0, 2.0, server="b", tl=2), w("b2", 2.0, 2.5, server="b", tl=2), w("a", 3.0, 3.5, tl=1)]
    assert [(q.key, r.key) for q, r in check_single_writer([touching[0]] + two).overlaps] == [("b1", "a")]


def test_single_writer_sentence_with_overlaps_and_forks():
    history = [w("a1", 0.0, 0.5, tl=1), w("b1", 1.0, 1.5, server="b", tl=2), w("c1", 2.0, 2.5, server="c", tl=2),
               w("a2", 3.0, 3.5, tl=1), w("e1", 4.0, 4.5, server="e", tl=3), w("f1", 5.0, 5.5, server="f", tl=3)]
    assert check_single_writer(history).summary == (
        "Two writable primaries: 1 write(s) acknowledged by an older primary after a newer one had acknowledged "
        "(first: a at 3.500 after b at 1.500); timeline(s) 2, 3 served by several servers.")


def test_throughput_default_bucket_is_one_second():
    assert throughput([w("a", 0.0, 0.5)]).bucket_s == 1.0 and throughput([], 0.5).bucket_s == 0.5


# ----- restores: a point in time holds exactly the writes before it; the latest loses only a tail -----

#: Around the target 10.0: a and g acknowledged before it, b in flight, c unknown before it, d failed,
#: e acknowledged and f unknown both started after it, h a direct write before it.
PITR = [w("a", 1.0, 2.0), w("d", 3.0, 4.0, "fail"), w("c", 5.0, 6.0, "unknown"), w("h", 6.0, 7.0, client="direct"),
        w("b", 9.0, 11.0), w("g", 9.5, 9.75), w("e", 12.0, 13.0), w("f", 14.0, 15.0, "unknown")]


@pytest.mark.parametrize("in_flight", [set(), {"b"}, {"c"}, {"b", "c"}])
def test_point_in_time_valid_with_in_flight_and_unknown_writes_either_way(in_flight):
    v = check_point_in_time(PITR, 10.0, {"a", "g", "h"} | in_flight)
    assert v.valid, v.summary
    assert (v.acknowledged_before, v.started_after) == (3, 2)
    assert v.in_flight_present == in_flight and v.in_flight_absent == {"b", "c"} - in_flight
    assert not (v.missing_before or v.present_after or v.unexpected or v.failed_present)


def test_point_in_time_summary_counts_what_it_checked():
    assert check_point_in_time(PITR, 10.0, {"a", "b", "g", "h"}).summary == (
        "Restored to 10.000 (slack 0 s): 3 writes acknowledged before, 2 started after: none missing, none after, "
        "none unexpected; 1 in flight or unknown present, 1 absent.")


def test_point_in_time_reports_a_write_acknowledged_before_the_target_missing():
    v = check_point_in_time(PITR, 10.0, {"g", "b"})
    assert not v.valid and v.missing_before == {"a", "h"}, "a direct write counts like any other"
    assert "2 acknowledged before the target missing (a, h)" in v.summary


@pytest.mark.parametrize("late", ["e", "f"])
def test_point_in_time_reports_a_write_started_after_the_target_present_whatever_its_outcome(late):
    v = check_point_in_time(PITR, 10.0, {"a", "g", "h", late})
    assert not v.valid and v.present_after == {late} and not v.missing_before
    assert f"1 started after the target present ({late})" in v.summary


def test_point_in_time_reports_an_unexpected_key_and_a_failed_write_present():
    v = check_point_in_time(PITR, 10.0, {"a", "g", "h", "ghost", "d"})
    assert not v.valid and v.unexpected == {"ghost"} and v.failed_present == {"d"}
    assert v.summary == ("Restored to 10.000 (slack 0 s): 3 writes acknowledged before, 2 started after: "
                         "1 unexpected (ghost); 1 failed but present (d); 0 in flight or unknown present, 2 absent.")


def test_point_in_time_boundaries_a_write_ending_or_starting_at_the_target_is_in_flight():
    history = [w("end", 9.0, 10.0), w("start", 10.0, 11.0), w("before", 8.0, 9.999), w("after", 10.001, 11.0)]
    assert check_point_in_time(history, 10.0, {"before"}).valid
    assert check_point_in_time(history, 10.0, {"before", "end", "start"}).valid
    assert not check_point_in_time(history, 10.0, {"end"}).valid
    assert not check_point_in_time(history, 10.0, {"before", "after"}).valid


def test_point_in_time_slack_widens_the_in_flight_window_both_ways():
    history = PITR + [w("i", 10.25, 10.5)]
    assert check_point_in_time(history, 10.0, {"a", "h", "i"}).present_after == {"i"}
    assert check_point_in_time(history, 10.0, {"a", "h"}).missing_before == {"g"}
    v = check_point_in_time(history, 10.0, {"a", "h", "i"}, slack_s=0.5)
    assert v.valid and v.in_flight_present == {"i"} and v.in_flight_absent == {"b", "c", "g"}
    assert (v.acknowledged_before, v.started_after, v.slack_s) == (2, 2, 0.5)
    assert v.summary.startswith("Restored to 10.000 (slack 0.5 s): 2 writes acknowledged before")


def test_point_in_time_of_an_empty_history():
    v = check_point_in_time([], 10.0, set())
    assert v.valid and (v.acknowledged_before, v.started_after) == (0, 0)
    assert v.summary == ("Restored to 10.000 (slack 0 s): 0 writes acknowledged before, 0 started after: none missing, "
                         "none after, none unexpected; 0 in flight or unknown present, 0 absent.")
    ghost = check_point_in_time([], 10.0, {"ghost"})
    assert not ghost.valid and ghost.unexpected == {"ghost"}


#: Lost at 10.0: a..d acknowledged before the loss (d's end at 9.0 the latest), e concurrent with d,
#: z acknowledged only after the loss, r written on the restored cluster.
LATEST = [w("a", 1.0, 2.0), w("b", 3.0, 4.0), w("c", 6.0, 7.0), w("d", 8.0, 9.0), w("e", 8.5, 9.5),
          w("z", 9.5, 10.5), w("x", 5.0, 5.5, "fail"), w("r", 20.0, 20.5)]


def test_restore_latest_valid_when_only_a_tail_within_the_rpo_is_lost():
    full = check_restore_latest(LATEST, {"a", "b", "c", "d", "e", "r"}, 10.0, 2.0)
    assert full.valid and full.rpo_measured_s == 0.0 and full.acknowledged == 5 and not full.lost
    assert full.summary == "5 writes acknowledged before the loss: none lost; RPO 0.00 s (within the budget 2.0 s)."
    tail = check_restore_latest(LATEST, {"a", "b", "c", "e", "r"}, 10.0, 1.0)  # e overlapped d: no order
    assert tail.valid and tail.lost == {"d"} and not tail.holes and tail.rpo_measured_s == 1.0
    assert tail.summary == "5 writes acknowledged before the loss: 1 lost (d); RPO 1.00 s (within the budget 1.0 s)."


def test_restore_latest_reports_an_rpo_over_the_budget():
    v = check_restore_latest(LATEST, {"a", "b"}, 10.0, 2.5)
    assert not v.valid and v.lost == {"c", "d", "e"} and not v.holes and v.rpo_measured_s == 3.0
    assert v.summary == ("5 writes acknowledged before the loss: 3 lost (c, d, e); RPO 3.00 s "
                         "(over the budget 2.5 s).")
    assert check_restore_latest(LATEST, {"a", "b"}, 10.0, 3.0).valid


def test_restore_latest_reports_a_hole_before_a_later_write_present():
    v = check_restore_latest(LATEST, {"a", "c", "d", "e"}, 10.0, 60.0)
    assert not v.valid and v.lost == v.holes == {"b"} and v.rpo_measured_s == 6.0
    assert v.summary == ("5 writes acknowledged before the loss: 1 lost (b); 1 missing though a later write is "
                         "present (holes) (b); RPO 6.00 s (within the budget 60.0 s).")
    unknown = check_restore_latest(LATEST + [w("u", 9.25, 9.75, "unknown")], {"a", "b", "c", "u"}, 10.0, 60.0)
    assert not unknown.valid and unknown.holes == {"d"}, "an unknown write present committed after it started"


def test_restore_latest_does_not_judge_writes_after_the_loss():
    v = check_restore_latest(LATEST, {"a", "b", "c", "r"}, 10.0, 2.0)
    assert v.valid and v.lost == {"d", "e"} and not v.holes, "r, written after the restore, proves no hole"
    assert "z" not in v.lost and v.acknowledged == 5


def test_restore_latest_reports_unexpected_and_failed_keys_present():
    v = check_restore_latest(LATEST, {"a", "b", "c", "d", "e", "ghost", "x"}, 10.0, 2.0)
    assert not v.valid and v.unexpected == {"ghost"} and v.failed_present == {"x"} and v.rpo_measured_s == 0.0
    assert v.summary == ("5 writes acknowledged before the loss: 1 unexpected (ghost); 1 failed but present (x); "
                         "RPO 0.00 s (within the budget 2.0 s).")


def test_restore_latest_of_an_empty_history():
    v = check_restore_latest([], set(), 10.0, 0.0)
    assert v.valid and (v.acknowledged, v.rpo_measured_s, v.lost, v.holes) == (0, 0.0, frozenset(), frozenset())
    assert not check_restore_latest([], {"ghost"}, 10.0, 5.0).valid
