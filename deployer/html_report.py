"""``reports/<stack>/index.html``: one page a person reads after a run: every test's outcome, each
drill's verdicts and numbers against its budget with its timeline plot, and links to the evidence."""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path


def write_index(reports: Path, outcomes: list[tuple[str, str, float]]) -> Path:
    """Write the page from ``outcomes`` (test id, outcome, seconds) and the JSON results in ``reports``."""
    esc = html.escape
    rows = "".join(f"<tr class='{esc(o)}'><td>{esc(t)}</td><td>{esc(o)}</td><td>{s:.1f}</td></tr>"
                   for t, o, s in outcomes)
    drills = json.loads((reports / "drills.json").read_text()) if (reports / "drills.json").exists() else []
    cards = []
    for d in drills:
        plot = Path(d.get("timeline_plot", ""))
        img = f"<img src='{esc(os.path.relpath(plot, reports))}' width='900'>" if plot.is_file() else ""
        cards.append(f"<h3>{esc(d['drill'])}: {esc(d['old_leader'])} &rarr; {esc(d['new_leader'])}</h3>"
                     f"<p class='{'passed' if d['within_budget'] else 'failed'}'>write gap {d['write_gap_s']} s, "
                     f"budget {d['budget_s']} s</p><ul><li>{esc(d['set'])}</li><li>{esc(d['single_writer'])}</li></ul>{img}")
    logs = sorted(p.relative_to(reports) for p in (reports / "logs").glob("*/*")) if (reports / "logs").is_dir() else []
    links = "".join(f"<li><a href='{esc(str(p))}'>{esc(str(p))}</a></li>" for p in logs) or "<li>none (no failure)</li>"
    page = f"""<!doctype html><meta charset="utf-8"><title>pgha {esc(reports.name)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}} td{{padding:2px 8px}}
.passed{{color:#2a7d4f}} .failed,.error{{color:#b3261e}} .skipped{{color:#888}}</style>
<h1>Stack {esc(reports.name)}</h1><p>{time.strftime('%Y-%m-%d %H:%M:%S %Z')}:
{sum(o == 'passed' for _, o, _ in outcomes)} passed, {sum(o in ('failed', 'error') for _, o, _ in outcomes)} failed,
{sum(o == 'skipped' for _, o, _ in outcomes)} skipped.</p>
<h2>Tests</h2><table>{rows}</table><h2>Drills</h2>{''.join(cards) or '<p>none run</p>'}
<h2>Node logs of failed tests</h2><ul>{links}</ul>"""
    path = reports / "index.html"
    path.write_text(page)
    return path
