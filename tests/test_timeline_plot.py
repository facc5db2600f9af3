"""The drill timeline is legible at the size the report shows it: drawn 900 px wide, no label on
another label, the legend beside the axes rather than on the bars, even when the gap's events and
the leader changes fall within a second of each other (a switchover's)."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt

from deployer.drills import report
from deployer.drills.checkers import check_write_gap
from load.history import Op

FAULT = 1000.0


def history() -> list[Op]:
    """Writes every 50 ms for 40 s around a fault at ``FAULT``, none acknowledged for 19 s after it."""
    ops = []
    for i in range(800):
        start = FAULT - 20 + i * 0.05
        outcome = "fail" if FAULT < start < FAULT + 19 else "ok"
        ops.append(Op("write", f"k-{i}", start, start + 0.02, outcome, "10.0.1.5" if outcome == "ok" else None))
    return ops


def crowded_figure() -> plt.Figure:
    ops = history()
    marks = {"leader_key_gone": FAULT + 16.8, "promoted": FAULT + 18.9, "haproxies_routed": FAULT + 19.0,
             "lb_routed": FAULT + 19.05}
    leaders = [(FAULT - 19.0, "pg1"), (FAULT + 18.9, "pg2"), (FAULT + 19.1, "pg2")]
    return report.timeline_figure(ops, FAULT, FAULT + 25, check_write_gap(ops, FAULT, FAULT + 25),
                                  "crash-primary-vm (ci, async): pg1 -> pg2, write gap 19.0 s (budget 31.5 s)",
                                  marks, leaders)


def clashes(fig: plt.Figure) -> list[str]:
    """Every pair of visible, non-empty texts whose boxes overlap, and the legend if it lies on the axes."""
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(plt.Text) if t.get_visible() and t.get_text().strip()]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    found = [f"{a!r} on {b!r}" for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer)):
            found.append("the legend lies on the axes")
    return found


def test_the_timeline_is_drawn_at_the_width_shown_with_no_label_on_another():
    fig = crowded_figure()
    fig.canvas.draw()
    assert tuple(fig.get_size_inches() * fig.dpi) == (900, 340)
    assert clashes(fig) == []
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "leader key gone +16.8 s" in labels and "leader pg2 +18.9 s" in labels and "heal +25.0 s" in labels
    plt.close(fig)


def test_the_clash_check_finds_labels_drawn_on_each_other_and_a_legend_on_the_bars():
    """Negative control: the old layout (the events annotated side by side at the top, the legend
    inside the axes) is flagged."""
    fig = crowded_figure()
    ax = fig.axes[0]
    for label, at in (("promoted", 18.9), ("haproxies routed", 19.0)):
        ax.annotate(label, (at, 1), xycoords=("data", "axes fraction"), xytext=(3, -36), textcoords="offset points")
    ax.legend(loc="upper right")
    fig.canvas.draw()
    found = clashes(fig)
    assert "'promoted' on 'haproxies routed'" in found and "the legend lies on the axes" in found
    plt.close(fig)
