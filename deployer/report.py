"""Drill evidence a person reads: a timeline plot per drill (writes per second by outcome, with
the fault, the heal and the measured write gap marked), drawn from the recorded history."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from deployer.checkers import GapVerdict, throughput  # noqa: E402
from load.history import Op  # noqa: E402


def plot_timeline(history: list[Op], fault_at: float, heal_at: float | None, gap: GapVerdict, path: Path,
                  title: str) -> Path:
    """Write ``path`` (PNG): stacked ok/fail/unknown writes per second, seconds relative to the fault."""
    series = throughput(history, 1.0)
    xs = [b.start - fault_at for b in series.buckets]
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=110)
    ok = [b.ok for b in series.buckets]
    fail = [b.fail for b in series.buckets]
    ax.bar(xs, ok, width=1.0, align="edge", color="#2a9d8f", label="ok")
    ax.bar(xs, fail, width=1.0, align="edge", bottom=ok, color="#e76f51", label="failed")
    ax.bar(xs, [b.unknown for b in series.buckets], width=1.0, align="edge",
           bottom=[o + f for o, f in zip(ok, fail)], color="#e9c46a", label="unknown")
    ax.axvline(0, color="black", linestyle="--", linewidth=1)
    ax.annotate("fault", (0, 1), xycoords=("data", "axes fraction"), xytext=(3, -12), textcoords="offset points")
    if heal_at is not None:
        ax.axvline(heal_at - fault_at, color="#264653", linestyle=":", linewidth=1)
        ax.annotate("heal", (heal_at - fault_at, 1), xycoords=("data", "axes fraction"), xytext=(3, -24),
                    textcoords="offset points")
    ax.axvspan(gap.gap_start - fault_at, gap.gap_end - fault_at, color="#e76f51", alpha=0.12, zorder=0,
               label=f"write gap {gap.gap_s:.1f} s")
    ax.set_xlabel("seconds since the fault")
    ax.set_ylabel("writes per second")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
