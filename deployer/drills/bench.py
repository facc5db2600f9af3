"""``make bench-failover``: repeated trials of the failover drills for three profiles in one run,
their distributions and the goals they meet; writes ``reports/failover.json`` and
``reports/failover.png``::

    {profile: {"ttl": s, "sync": bool, "spec": file,
               fault: {"p50_s", "p95_s", "max_s", "per_ttl_p50", "lost", "victim_led_etcd": runs whose victim
                       was etcd's leader, "runs": [{measured_s, lost, parts, victim_led_etcd...}],
                       "goal": sentence, "met": bool, "slowest": {part: runs},
                       "parts_p50_s": {part: median seconds over the runs that observed it}}}}

Each profile is deployed over the same stack (``deployer up --spec PROFILE``: Patroni's dynamic
configuration changes in place), each fault runs ``TRIALS`` times through ``trial.run`` (steady
load, observers, checkers: exactly what ``pytest -m chaos`` runs), and the stack is torn down at
the end. A trial that breaks is recorded with its error and the bench goes on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from deployer.drills import trial  # noqa: E402
from deployer.drills.catalogue import CATALOGUE  # noqa: E402
from deployer.paths import DEFAULT_SPEC, REPORTS  # noqa: E402
from deployer.spec import StackSpec, load_spec  # noqa: E402
from deployer.stack import Stack  # noqa: E402

PROFILES = {"patroni-defaults": Path(__file__).parents[1] / "profiles" / "patroni-defaults.yaml",
            "tuned": DEFAULT_SPEC,
            "tuned-sync": Path(__file__).parents[1] / "profiles" / "tuned-sync.yaml"}
FAULTS = ("crash-primary-vm", "isolate-primary", "switchover", "kill-postmaster")
TRIALS = 5


def goal(fault: str, spec: StackSpec) -> tuple[str, callable]:
    """The issue's goal for ``fault`` under ``spec``, as a sentence and a test of the figures."""
    ttl, loop = spec.patroni.ttl, spec.patroni.loop_wait
    if fault in ("crash-primary-vm", "isolate-primary"):
        return (f"write gap p50 <= 1.0 x ttl ({ttl} s), p95 <= 1.1 x ttl",
                lambda f: f["p50_s"] <= ttl and f["p95_s"] <= 1.1 * ttl)
    if fault == "switchover":
        return "write gap p95 <= 1.5 s through the load balancer", lambda f: f["p95_s"] <= 1.5
    return (f"no leader change, write gap max <= loop_wait + 2 s ({loop + 2} s)",
            lambda f: f["max_s"] <= loop + 2 and f["leader_changes"] == 0)


def figures(runs: list[dict], spec: StackSpec, fault: str) -> dict:
    """Distribution of one fault's trials, with its goal (``goal``), per run the slowest hop, and each
    hop's median: where a missed goal's time went."""
    gaps = [r["measured_s"] for r in runs if "measured_s" in r]
    out = {"runs": runs, "errors": sum("error" in r for r in runs),
           "lost": sum(r.get("lost", 0) for r in runs),
           "leader_changes": sum(r.get("old_leader") != r.get("new_leader") for r in runs if "measured_s" in r),
           "slowest": dict(Counter(r["gap_slowest"] for r in runs if r.get("gap_slowest"))),
           "victim_led_etcd": sum(bool(r.get("victim_led_etcd")) for r in runs)}
    parts = [r["gap_parts_s"] for r in runs if r.get("gap_parts_s")]
    out["parts_p50_s"] = {part: round(statistics.median(p[part] for p in parts if part in p), 2)
                          for part in dict.fromkeys(k for p in parts for k in p)}
    if gaps:
        p95 = statistics.quantiles(gaps, n=20, method="inclusive")[18] if len(gaps) > 1 else gaps[0]
        out.update(p50_s=round(statistics.median(gaps), 2), p95_s=round(p95, 2), max_s=max(gaps),
                   per_ttl_p50=round(statistics.median(gaps) / spec.patroni.ttl, 3))
    sentence, test = goal(fault, spec)
    if fault != "kill-postmaster":
        out["leader_changes"] = None  # a leader change is the point of these drills
    out["goal"] = sentence + (", zero lost writes" if spec.patroni.synchronous_mode else "")
    out["met"] = bool(gaps) and not out["errors"] and test(out) and not (spec.patroni.synchronous_mode and out["lost"])
    return out


def _deploy(name: str, spec_file: Path) -> None:
    subprocess.run([sys.executable, "-m", "deployer.cli", "up", "--name", name, "--spec", str(spec_file)], check=True)


def plot(results: dict, path: Path) -> Path:
    """One panel per fault: the write gaps of every profile's trials, ttl marked."""
    fig, axes = plt.subplots(1, len(FAULTS), figsize=(4 * len(FAULTS), 3.8), dpi=110)
    for ax, fault in zip(axes, FAULTS):
        names = [p for p in results if results[p][fault].get("p50_s") is not None]
        ax.boxplot([[r["measured_s"] for r in results[p][fault]["runs"] if "measured_s" in r] for p in names],
                   tick_labels=names)
        for i, p in enumerate(names, 1):
            ax.hlines(results[p]["ttl"], i - 0.4, i + 0.4, colors="#e76f51", linestyles=":", linewidth=1)
        ax.set_title(fault, fontsize=10)
        ax.set_ylabel("write gap (s)")
        ax.tick_params(axis="x", labelsize=7, rotation=15)
    trials = max(len(results[p][f]["runs"]) for p in results for f in FAULTS if f in results[p])
    fig.suptitle(f"{trials} trials per fault and profile (dotted: the profile's ttl)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="pgha")
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--profiles", nargs="*", default=list(PROFILES), choices=list(PROFILES))
    parser.add_argument("--out", default="failover", help="file name stem under reports/ (.json and .png)")
    args = parser.parse_args()
    drills = {d.name: d for d in CATALOGUE}
    results = {}
    try:
        for profile in args.profiles:
            spec = load_spec(PROFILES[profile])
            _deploy(args.name, PROFILES[profile])
            stack = Stack.attach(args.name)
            results[profile] = {"ttl": spec.patroni.ttl, "sync": spec.patroni.synchronous_mode,
                                "spec": str(PROFILES[profile].relative_to(DEFAULT_SPEC.parent))}
            for fault in FAULTS:
                runs = []
                for i in range(args.trials):
                    print(f"bench-failover: {profile} {fault} trial {i + 1}/{args.trials}", flush=True)
                    try:
                        record = trial.run(stack, drills[fault]).record
                        runs.append({k: record[k] for k in ("measured_s", "write_gap_s", "gap_parts_s", "gap_slowest",
                                                            "sequential_gap_s", "sequential_short_timeout_gap_s",
                                                            "lost", "zombie_primary_s",
                                                            "converged_s", "old_leader", "new_leader", "victim_led_etcd",
                                                            "verdict")})
                    except Exception as exc:  # noqa: BLE001 - a broken trial is a figure too
                        runs.append({"error": f"{type(exc).__name__}: {str(exc)[:300]}"})
                results[profile][fault] = figures(runs, spec, fault)
                REPORTS.mkdir(exist_ok=True)
                (REPORTS / f"{args.out}.json").write_text(json.dumps(results, indent=2) + "\n")
        plot(results, REPORTS / f"{args.out}.png")
    finally:
        subprocess.run([sys.executable, "-m", "deployer.cli", "down", "--name", args.name], check=False)
    print(json.dumps({p: {f: {k: v for k, v in r[f].items() if k != "runs"} for f in FAULTS if f in r}
                      for p, r in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
