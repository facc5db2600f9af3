"""The summary at the top of a run's ``report.html``, what a person reads in the morning: the stack
(name, target, spec profile, the versions every node's platform reports: ``platform_facts``), the
failed checks, one table of the drills, failing ones first (``drill_rows``), and the trend of each
drill's write gap with its regression flag (``deployer.drills.trend``), as one HTML fragment
(``summary_html``)."""

from __future__ import annotations

import base64
import html
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deployer import patroni
from deployer.drills.trend import MIN_PREVIOUS, Trend
from deployer.inventory import TLS_ON_NODE
from deployer.stack import Stack

#: Run on a node as root, one answer per line: PostgreSQL's ``server_version``, etcd's ``/version``
#: (JSON) on its loopback client port ($1; HTTPS, the node's client certificate: $2-$4 are the CA,
#: certificate and key files), HAProxy's ``haproxy -v`` first line.
_VERSIONS = ('runuser -u postgres -- psql -XAtqc "SHOW server_version"; '
             'python3 -c "import sys,ssl,urllib.request as u;c=ssl.create_default_context(cafile=sys.argv[2]);'
             'c.load_cert_chain(sys.argv[3],sys.argv[4]);print(u.urlopen(sys.argv[1],timeout=3,context=c).read().decode())" '
             '"https://127.0.0.1:$1/version" "$2" "$3" "$4"; haproxy -v | head -n 1')
#: The file in a run's directory holding ``platform_facts`` (written once per run, read by the summary).
FACTS = "stack.json"
#: Headers of the drill table, in order.
COLUMNS = ("drill", "victim", "write gap (slowest hop)", "budget", "lost", "zombie s", "trend", "verdict")


def _node_versions(stack: Stack, node: str) -> dict[str, str]:
    try:
        out = stack.ssh(node, ["sudo", "sh", "-c", _VERSIONS, "sh", str(stack.spec.ports.etcd_client),
                                   *TLS_ON_NODE.values()],
                        timeout=15).stdout.splitlines()
        pg, etcd, haproxy = (out + ["", "", ""])[:3]
        found = {"PostgreSQL": pg, "etcd": json.loads(etcd).get("etcdserver", etcd) if etcd else "",
                 "HAProxy": haproxy.removeprefix("HAProxy version ")}
        found["Patroni"] = patroni.get(stack.target, node, "/patroni")["patroni"]["version"]
        return found
    except Exception as exc:  # noqa: BLE001 - the summary says what it could not read, the run goes on
        return {"error": f"not read ({type(exc).__name__}: {str(exc)[:200]})"}


def platform_facts(stack: Stack) -> dict:
    """The stack as the summary shows it: ``stack``, ``target``, ``profile``, ``synchronous_mode`` and
    ``versions`` (component -> {version as reported: [nodes]}; PostgreSQL's ``server_version``,
    Patroni's ``/patroni``, etcd's ``/version``, ``haproxy -v``), every node asked at once; a node
    that cannot answer is listed under ``unread`` with why."""
    nodes = [n.name for n in stack.spec.nodes]
    with ThreadPoolExecutor(len(nodes)) as pool:
        per_node = dict(zip(nodes, pool.map(lambda n: _node_versions(stack, n), nodes)))
    versions: dict[str, dict[str, list[str]]] = {}
    for node, found in per_node.items():
        for component, version in found.items():
            if component != "error":
                versions.setdefault(component, {}).setdefault(version, []).append(node)
    return {"stack": stack.state.name, "target": stack.target.name, "profile": stack.spec.profile,
            "synchronous_mode": stack.spec.patroni.synchronous_mode, "versions": versions,
            "unread": {node: found["error"] for node, found in per_node.items() if "error" in found}}


def save_facts(stack: Stack, run_dir: Path) -> None:
    """Write ``platform_facts`` to ``run_dir/FACTS`` unless this run has them already (xdist workers
    and nested runs share the run directory); written whole or not at all."""
    path = run_dir / FACTS
    if not path.exists():
        part = path.with_suffix(f".{os.getpid()}.part")  # one per process: xdist workers write at once
        part.write_text(json.dumps(platform_facts(stack), indent=2) + "\n")
        part.replace(path)


def drill_rows(records: list[dict], judged: list[Trend]) -> list[tuple[bool, list[str]]]:
    """One row per drill record, (failed, cells in ``COLUMNS`` order), failing and interrupted
    drills first, each group in run order; the trend cell is the regression rule's word."""
    by_drill = {t.drill: t for t in judged}
    rows = []
    for r in records:
        t = by_drill.get(r["drill"])
        trend = ("regression" if t.regression else "within p95" if t.p95 is not None
                 else f"not judged (&lt;{MIN_PREVIOUS} runs)") if t else ""
        if r["verdict"] == "interrupted":
            rows.append((True, [r["drill"], r.get("victim") or "", "", "", "", "", trend,
                                f"interrupted while {r['phase']}"]))
            continue
        hop = r["gap_slowest"].replace("_", " ") or "no hop observed"
        rows.append((r["verdict"] != "pass", [
            r["drill"], r["victim"], f"{r['write_gap_s']:.2f} s ({hop})",
            f"{r['measured_s']:.2f} of {r['budget_s']:g} s from the {r['budget_from']}", str(r["lost"]),
            f"{r['zombie_primary_s']:.2f}", trend, "pass" if r["verdict"] == "pass" else f"FAIL: {r['verdict']}"]))
    return sorted(rows, key=lambda row: not row[0])


def _versions_html(facts: dict) -> str:
    esc = html.escape
    if not facts:
        return "<p>Stack: not attached in this run.</p>"
    nodes = len({n for found in facts["versions"].values() for ns in found.values() for n in ns} | set(facts["unread"]))
    items = "".join(
        f"<li><b>{esc(component)}</b> " + "; ".join(
            esc(v) + ("" if len(ns) == nodes else f" on {esc(', '.join(ns))}") for v, ns in found.items()) + "</li>"
        for component, found in sorted(facts["versions"].items()))
    unread = "".join(f"<li>{esc(node)}: {esc(why)}</li>" for node, why in facts["unread"].items())
    mode = "synchronous" if facts["synchronous_mode"] else "asynchronous"
    return (f"<p>Stack <b>{esc(facts['stack'])}</b> on target <b>{esc(facts['target'])}</b>, spec profile "
            f"<b>{esc(facts['profile'])}</b> ({mode} replication).</p><ul class='pgha-versions'>{items}{unread}</ul>")


def summary_html(facts: dict, records: list[dict], judged: list[Trend], failed: list[str],
                 trend_png: Path | None) -> str:
    """The summary fragment: the stack and its versions (``facts`` from ``platform_facts``, empty when
    no stack was attached), the failed checks (test ids), the drill table (``drill_rows``), the
    trend plot (``trend_png``, embedded) and each regression said in a sentence."""
    esc = html.escape
    failed_html = (f"<p class='pgha-fail'>{len(failed)} failed: " + ", ".join(f"<code>{esc(t)}</code>" for t in failed)
                   + "</p>") if failed else "<p class='pgha-pass'>No check failed.</p>"
    table = ""
    if records:
        head = "".join(f"<th>{c}</th>" for c in COLUMNS)
        body = "".join(f"<tr class='{'pgha-row-fail' if bad else 'pgha-row-pass'}'>"
                       + "".join(f"<td>{c if i == COLUMNS.index('trend') else esc(c)}</td>" for i, c in enumerate(cells))
                       + "</tr>" for bad, cells in drill_rows(records, judged))
        table = f"<table class='pgha-drills'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    regressions = "".join(f"<li>{esc(t.summary)}</li>" for t in judged if t.regression)
    trend = ""
    if trend_png is not None:
        png = base64.b64encode(trend_png.read_bytes()).decode()
        trend = (f"<h3>Write gap over the last runs</h3>"
                 + (f"<ul class='pgha-fail'>{regressions}</ul>" if regressions else "")
                 + f"<img class='pgha-trend' alt='write gap trend' src='data:image/png;base64,{png}'/>"
                 + "<p>Each drill's write gap in its last runs on this target and profile; dashed: the previous "
                   "runs' p95, beyond which a gap is a regression.</p>")
    return (f"<div class='pgha-summary'>{_versions_html(facts)}{failed_html}"
            + (f"<h3>Drills</h3>{table}" if table else "<p>No drill ran in this run.</p>") + trend + "</div>")
