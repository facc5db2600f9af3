"""Drill evidence a person reads, in one place: JSON records (``append_record``; an interrupted
drill's is ``deployer.drills.trial.interrupted_record``), a timeline plot
per drill (writes per second by outcome, fault, heal and write gap marked), the fragments the run's
pytest-html report (``reports/<run id>/report.html``) shows beside a test (a drill's card, links to
a failed test's logs), and a log bundle from every node of a failed test."""

from __future__ import annotations

import html
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from typing import TYPE_CHECKING

from deployer.drills.checkers import FRONTEND, GapVerdict, throughput
from deployer.stack import Stack
from load.history import Op

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: What a log bundle holds from each node: file label -> command run as root there.
NODE_LOGS = {
    "journal": ["journalctl", "--no-pager", "-n", "400"],
    "patroni": ["journalctl", "--no-pager", "-u", "patroni", "-n", "400"],
    "etcd": ["journalctl", "--no-pager", "-u", "etcd", "-n", "200"],
    "haproxy": ["journalctl", "--no-pager", "-u", "haproxy", "-n", "200"],
    "postgresql": ["sh", "-c", "tail -n 300 /var/log/postgresql/*.log"],
}


def append_record(path: Path, record: dict, key: str | None = None) -> None:
    """Append ``record`` to the JSON list in ``path``; with ``key``, first drop a record with the same
    value of ``key`` (one record per drill)."""
    records = json.loads(path.read_text()) if path.exists() else []
    if key is not None:
        records = [r for r in records if r.get(key) != record[key]]
    path.write_text(json.dumps(records + [record], indent=2) + "\n")


def collect_logs(stack: Stack, bundle: Path) -> None:
    """Write ``<node>-<label>.log`` for every node and every entry of ``NODE_LOGS`` into ``bundle``,
    all of them at once (a failing test waits for the slowest, not for their sum); best effort: a
    node that cannot answer gets a file saying why."""
    bundle.mkdir(parents=True, exist_ok=True)

    def collect(node: str, label: str) -> None:
        path = bundle / f"{node}-{label}.log"
        try:
            out = stack.ssh(node, ["sudo", *NODE_LOGS[label]], timeout=20, check=False)
            path.write_text(out.stdout + out.stderr)
        except Exception as exc:  # noqa: BLE001 - evidence is best effort, the failure stands
            path.write_text(f"could not collect: {exc}\n")

    jobs = [(node.name, label) for node in stack.spec.nodes for label in NODE_LOGS]
    with ThreadPoolExecutor(len(jobs)) as pool:
        list(pool.map(lambda job: collect(*job), jobs))


def pyplot():
    """matplotlib's pyplot drawing to files only (Agg), imported on first use: importing it costs
    most of a second, which every ``pytest -m smoke`` would pay for plots it never draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


#: Colours of the gap's parts as dotted lines (in ``GAP_PARTS`` order), and of the leader key's changes.
MARK_COLOURS = ("#6d597a", "#b5838d", "#355070", "#e56b6f")
LEADER_COLOUR = "#264653"


def timeline_figure(history: list[Op], fault_at: float, heal_at: float | None, gap: GapVerdict, title: str,
                    marks: dict[str, float] | None = None,
                    leaders: list[tuple[float, str | None]] | None = None) -> Figure:
    """The timeline as a figure drawn for the width the report shows it at (900 px): stacked
    ok/fail/unknown writes per second through the frontend, seconds relative to the fault; the
    fault, the heal, ``marks`` (label -> time: the gap's parts) and ``leaders`` (time, holder: the
    leader key's changes) as vertical lines named only in the legend, beside the axes, so no label
    lies on the bars, on another label or on the legend."""
    series = throughput([op for op in history if op.client in FRONTEND], 1.0)
    xs = [b.start - fault_at for b in series.buckets]
    fig, ax = pyplot().subplots(figsize=(9, 3.4), dpi=100)
    ok = [b.ok for b in series.buckets]
    fail = [b.fail for b in series.buckets]
    ax.bar(xs, ok, width=1.0, align="edge", color="#2a9d8f", label="ok")
    ax.bar(xs, fail, width=1.0, align="edge", bottom=ok, color="#e76f51", label="failed")
    ax.bar(xs, [b.unknown for b in series.buckets], width=1.0, align="edge",
           bottom=[o + f for o, f in zip(ok, fail)], color="#e9c46a", label="unknown")
    ax.axvspan(gap.gap_start - fault_at, gap.gap_end - fault_at, color="#e76f51", alpha=0.15, zorder=0,
               label=f"write gap {gap.gap_s:.1f} s")
    ax.axvline(0, color="black", linestyle="--", linewidth=1.2, label="fault")
    if heal_at is not None:
        ax.axvline(heal_at - fault_at, color="black", linestyle="-.", linewidth=1.2,
                   label=f"heal +{heal_at - fault_at:.1f} s")
    for i, (label, at) in enumerate(sorted((marks or {}).items(), key=lambda m: m[1])):
        ax.axvline(at - fault_at, color=MARK_COLOURS[i % len(MARK_COLOURS)], linestyle=":", linewidth=1.6,
                   label=f"{label.replace('_', ' ')} {at - fault_at:+.1f} s")
    for at, holder in leaders or []:
        ax.axvline(at - fault_at, color=LEADER_COLOUR, linestyle=(0, (1, 3)), linewidth=1,
                   label=f"leader {holder} {at - fault_at:+.1f} s")
    ax.set_xlabel("seconds since the fault", fontsize=10)
    ax.set_ylabel("writes per second", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.set_title(title, fontsize=10, loc="left", wrap=True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0)
    fig.tight_layout()
    return fig


def plot_timeline(history: list[Op], fault_at: float, heal_at: float | None, gap: GapVerdict, path: Path,
                  title: str, marks: dict[str, float] | None = None,
                  leaders: list[tuple[float, str | None]] | None = None) -> Path:
    """Write ``path`` (PNG): ``timeline_figure`` of these arguments."""
    fig = timeline_figure(history, fault_at, heal_at, gap, title, marks, leaders)
    fig.savefig(path)
    pyplot().close(fig)
    return path


def drill_card(record: dict) -> str:
    """One drill's verdicts and numbers against its budget, as an HTML fragment for the run's report
    (an interrupted drill's card says what stopped it, when, and what its run left behind)."""
    esc = html.escape
    if record["verdict"] == "interrupted":
        left = "; ".join(record["left_in_journal"]) or "nothing: healed, helpers stopped"
        return (f"<h3>{esc(record['drill'])}: interrupted</h3><p>{esc(record['interrupted'])} while "
                f"{esc(record['phase'])}. Left in the fault journal: {esc(left)}.</p>")
    verdict = "within" if record["within_budget"] else "OVER"
    mode = "synchronous" if record["synchronous_mode"] else "asynchronous"
    parts = ", ".join(f"{esc(k)} {v:.2f} s" for k, v in record["gap_parts_s"].items()) or "none observed"
    items = "".join(f"<li>{esc(str(record[k]))}</li>" for k in ("set", "single_writer", "zombie", "stale_reads",
                                                               "sequential", "sequential_short_timeout"))
    return (f"<h3>{esc(record['drill'])}: {esc(record['old_leader'])} &rarr; {esc(record['new_leader'])}</h3>"
            f"<p>Profile {esc(record['profile'])} ({mode} replication). Measured {record['measured_s']} s "
            f"from the {esc(record['budget_from'])}, budget {record['budget_s']} s: {verdict} budget. "
            f"Write gap {record['write_gap_s']} s: {parts}. Converged {record['converged_s']} s after the heal.</p>"
            f"<p>Expected: {esc(record['expect'])}</p><p>Verdict: {esc(record['verdict'])}</p><ul>{items}</ul>"
            f"<p><a href='file://{esc(record['locust_html'])}'>Locust's report</a></p>")


def log_links(bundle: Path, reports: Path) -> str:
    """An HTML list linking every file of a log bundle, relative to the report's directory."""
    esc = html.escape
    items = "".join(f"<li><a href='{esc(str(p.relative_to(reports)))}'>{esc(p.name)}</a></li>"
                    for p in sorted(bundle.iterdir()))
    return f"<p>Logs from every node:</p><ul>{items}</ul>"
