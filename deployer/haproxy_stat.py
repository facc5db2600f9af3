"""HAProxy's ``show stat`` CSV (what the node HAProxies and the local load balancer report of
themselves), read once for everyone."""

from __future__ import annotations

import csv
import io


def servers(show_stat: str) -> dict[str, dict[str, dict[str, str]]]:
    """``{proxy: {server: row}}`` for every server line (the FRONTEND/BACKEND aggregates left out);
    ``row`` holds the CSV's columns by name (``status``, ``addr``, ``check_status``, ``stot``...)."""
    found: dict[str, dict[str, dict[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(show_stat.lstrip("# "))):
        if row.get("svname") not in (None, "FRONTEND", "BACKEND"):
            found.setdefault(row["pxname"], {})[row["svname"]] = row
    return found


def is_up(row: dict[str, str]) -> bool:
    """True for ``UP`` and ``UP 1/2`` (going down but still serving), False for DOWN, MAINT, NOLB..."""
    return row.get("status", "").startswith("UP")
