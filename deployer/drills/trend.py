"""The drills' trend across runs: every run appends its figures to ``reports/history.jsonl``
(``history_lines``, ``append_history``: one JSON line per run and drill), and each drill's write gap
is judged against the same drill's previous runs (``judge``: beyond their p95 is a regression) and
plotted over the last runs (``plot_trend``).

The regression rule needs ``MIN_PREVIOUS`` (5) previous runs of the drill on the same target and
profile: with fewer, the p95 is the previous maximum or a line between two points and one noisy run
decides; the drill is then reported as not judged, never as a regression. It looks back at most
``LAST_RUNS`` (20) runs, so a change of the platform ages out of the reference.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from deployer.drills.report import pyplot

#: Previous runs of a drill the regression rule needs before it judges.
MIN_PREVIOUS = 5
#: How many previous runs the rule and the plot look back at.
LAST_RUNS = 20


def history_lines(records: list[dict], *, run: str, at: str, stack: str, target: str) -> list[dict]:
    """One history line per drill record of ``drills.json`` (an interrupted drill's without figures):
    the run id, the time, the stack and target, and the drill's figures (``write_gap_s`` its write
    gap, ``slowest_hop``, ``measured_s`` against ``budget_s``, ``lost`` acknowledged writes through
    the load balancer, ``zombie_s``) and ``verdict`` ("pass", "fail" or "interrupted")."""
    lines = []
    for r in records:
        figures = {} if r["verdict"] == "interrupted" else {
            "write_gap_s": r["write_gap_s"], "slowest_hop": r["gap_slowest"] or None, "measured_s": r["measured_s"],
            "budget_s": r["budget_s"], "budget_from": r["budget_from"], "lost": r["lost"],
            "zombie_s": r["zombie_primary_s"]}
        verdict = r["verdict"] if r["verdict"] in ("pass", "interrupted") else "fail"
        lines.append({"run": run, "at": at, "stack": stack, "target": target, "profile": r["profile"],
                      "drill": r["drill"], "victim": r.get("victim"), **figures, "verdict": verdict})
    return lines


def read_history(path: Path) -> list[dict]:
    """Every line of the history file ``path`` in file order (empty when there is none)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_history(path: Path, lines: list[dict]) -> list[dict]:
    """Append to ``path`` each of ``lines`` whose (run, drill) is not in it yet (a nested pytest run
    of the same run sees the same records); the lines appended."""
    seen = {(h["run"], h["drill"]) for h in read_history(path)}
    new = [line for line in lines if (line["run"], line["drill"]) not in seen]
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.writelines(json.dumps(line, sort_keys=True) + "\n" for line in new)
    return new


@dataclass(frozen=True)
class Trend:
    """One drill's write gap in this run (``figure``, seconds) against its ``previous`` runs' (oldest
    first, at most ``LAST_RUNS``): their ``p95`` (None when fewer than ``MIN_PREVIOUS``: not judged)
    and whether the figure is beyond it (``regression``), said in ``summary``."""

    drill: str
    figure: float
    previous: tuple[float, ...]
    p95: float | None
    regression: bool
    summary: str


def judge(drill: str, figure: float, previous: list[float]) -> Trend:
    """The regression rule: ``figure`` beyond the p95 (inclusive linear interpolation) of the last
    ``LAST_RUNS`` of ``previous`` (oldest first) is a regression; with fewer than ``MIN_PREVIOUS``
    previous figures the drill is not judged."""
    previous = previous[-LAST_RUNS:]
    if len(previous) < MIN_PREVIOUS:
        return Trend(drill, figure, tuple(previous), None, False,
                     f"{drill}: write gap {figure:.2f} s, not judged ({len(previous)} previous run(s), "
                     f"the rule needs {MIN_PREVIOUS}).")
    p95 = statistics.quantiles(previous, n=20, method="inclusive")[-1]
    regression = figure > p95
    return Trend(drill, figure, tuple(previous), p95, regression,
                 f"{drill}: write gap {figure:.2f} s {'beyond' if regression else 'within'} the p95 {p95:.2f} s "
                 f"of its previous {len(previous)} runs" + (": a regression." if regression else "."))


def trends(history: list[dict], run: str) -> list[Trend]:
    """``judge`` for every drill of ``run`` in ``history`` that has a write gap, against the earlier
    lines of the same drill, target and profile (file order is run order)."""
    out = []
    for i, line in enumerate(history):
        if line["run"] != run or line.get("write_gap_s") is None:
            continue
        same = (line["drill"], line["target"], line["profile"])
        previous = [h["write_gap_s"] for h in history[:i] if h["run"] != run and h.get("write_gap_s") is not None
                    and (h["drill"], h["target"], h["profile"]) == same]
        out.append(judge(line["drill"], line["write_gap_s"], previous))
    return out


def plot_trend(judged: list[Trend], path: Path) -> Path:
    """Write ``path`` (PNG): one small panel per drill, its write gap over the previous runs and this
    one (the last point: red and larger when a regression), the previous runs' p95 dashed where judged."""
    cols = min(3, max(1, len(judged)))
    rows = -(-len(judged) // cols) or 1
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.1 * rows), dpi=100, squeeze=False)
    for ax, t in zip(axes.flat, judged):
        ys = [*t.previous, t.figure]
        xs = list(range(-len(t.previous), 1))
        ax.plot(xs, ys, marker="o", markersize=3, color="#264653", linewidth=1)
        if t.p95 is not None:
            ax.axhline(t.p95, color="#6d597a", linestyle="--", linewidth=1)
        ax.plot([0], [t.figure], marker="o", markersize=8 if t.regression else 5, linestyle="none",
                color="#d62828" if t.regression else "#2a9d8f", markeredgecolor="black")
        ax.set_title(f"{t.drill}{' REGRESSION' if t.regression else ''}", fontsize=9,
                     color="#d62828" if t.regression else "black")
        ax.tick_params(labelsize=7)
        ax.set_xticks(xs[::-1][::max(1, len(xs) // 6)])  # 0 and every few runs back, whole numbers only
        ax.set_xlim(xs[0] - 0.5, 0.5)
        ax.set_ylim(bottom=0, top=max(ys + [t.p95 or 0]) * 1.25 or 1)
    for ax in list(axes.flat)[len(judged):]:
        ax.axis("off")
    fig.supxlabel("runs ago (0: this run)", fontsize=8)
    fig.supylabel("write gap, s", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
