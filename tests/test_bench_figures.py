"""``make bench-failover``'s figures: percentiles, the goal's verdict and where the time went."""

from __future__ import annotations

from deployer.drills.bench import figures
from deployer.spec import load_spec

SPEC = load_spec()  # ttl 20


def _run(gap: float, detection: float, lb: float) -> dict:
    return {"measured_s": gap, "gap_parts_s": {"detection": detection, "election": 2.2, "load_balancer": lb},
            "gap_slowest": "detection", "lost": 0, "old_leader": "pg1", "new_leader": "pg2"}


def test_a_crash_goal_missed_by_the_median_says_so_with_each_hops_median():
    out = figures([_run(g, g - 4, 1.8) for g in (19.0, 21.0, 22.0)], SPEC, "crash-primary-vm")
    assert (out["p50_s"], out["max_s"], out["per_ttl_p50"], out["met"]) == (21.0, 22.0, 1.05, False)
    assert out["parts_p50_s"] == {"detection": 17.0, "election": 2.2, "load_balancer": 1.8}
    assert out["slowest"] == {"detection": 3}


def test_a_crash_goal_within_ttl_is_met():
    assert figures([_run(g, g - 4, 1.8) for g in (18.0, 19.0, 20.0)], SPEC, "crash-primary-vm")["met"] is True


def test_a_broken_trial_fails_the_goal_and_a_partless_run_leaves_the_medians_alone():
    runs = [_run(18.0, 14, 1.8), {"error": "WaitTimeout: ..."}, {"measured_s": 18.5, "lost": 0}]
    out = figures(runs, SPEC, "crash-primary-vm")
    assert (out["errors"], out["met"], out["parts_p50_s"]["detection"]) == (1, False, 14)
