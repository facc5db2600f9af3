"""Checkers (Jepsen's checker role): pure functions turning a recorded history (``load.history``)
into a verdict with numbers, a ``valid`` flag and a one-line ``summary``.

- ``check_set``: no acknowledged write lost, nothing appeared that was never attempted.
- ``check_write_gap``: the longest write unavailability around a fault (the measured RTO).
- ``check_single_writer``: never two writable primaries acknowledging writes at the same time.
- ``throughput``: ok / fail / unknown writes per time bucket, for the timeline plot.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from load.history import Op


def _writes(history: list[Op], outcome: str | None = None) -> list[Op]:
    return [op for op in history if op.kind == "write" and (outcome is None or op.outcome == outcome)]


def _sample(keys: frozenset[str], n: int = 3) -> str:
    return ", ".join(sorted(keys)[:n]) + (", ..." if len(keys) > n else "")


@dataclass(frozen=True)
class SetVerdict:
    """``lost``: acknowledged writes missing from the final read; ``unexpected``: keys read that were
    never attempted; ``recovered``/``never_applied``: unknown writes present/absent (both fine);
    ``failed_present``: writes reported failed yet present (the client was told "certainly not")."""

    valid: bool
    summary: str
    ok: int
    fail: int
    unknown: int
    lost: frozenset[str]
    unexpected: frozenset[str]
    recovered: frozenset[str]
    never_applied: frozenset[str]
    failed_present: frozenset[str]


def check_set(history: list[Op], final_keys: set[str]) -> SetVerdict:
    """Jepsen's set checker (as in Patroni's Jepsen test) over the writes of ``history`` and the keys
    read at the end (after heal, from the primary). Valid iff nothing lost, nothing unexpected and
    no failed write present (a ``fail`` outcome claims the write certainly did not happen)."""
    final = frozenset(final_keys)
    by = {o: {op.key for op in _writes(history, o)} for o in ("ok", "fail", "unknown")}
    attempted = {op.key for op in _writes(history)}
    lost = frozenset(by["ok"] - final)
    unexpected = frozenset(final - attempted)
    recovered = frozenset(by["unknown"] & final)
    never_applied = frozenset(by["unknown"] - final)
    failed_present = frozenset(by["fail"] & final - by["ok"] - by["unknown"])
    valid = not (lost or unexpected or failed_present)
    counts = f"{len(by['ok'])} ok, {len(by['fail'])} failed, {len(by['unknown'])} unknown writes"
    problems = [f"{len(s)} {name} ({_sample(s)})" for name, s in
                (("lost", lost), ("unexpected", unexpected), ("failed but present", failed_present)) if s]
    summary = (f"{counts}: " + ("; ".join(problems) if problems else "none lost, none unexpected")
               + f"; {len(recovered)} unknown recovered, {len(never_applied)} never applied.")
    return SetVerdict(valid, summary, len(by["ok"]), len(by["fail"]), len(by["unknown"]),
                      lost, unexpected, recovered, never_applied, failed_present)


@dataclass(frozen=True)
class GapVerdict:
    """``gap_s``: the longest time between consecutive acknowledged writes (``gap_start`` ->
    ``gap_end``), from the last acknowledged write before the fault to the end of the history.
    ``first_failed_at``: end of the first non-ok write after the fault; ``first_ok_after_fault_at``:
    end of the first ok write started after the fault; ``resumed_before_heal``: writes came back
    before the heal (None without a heal). Valid iff writes resumed (and within ``budget_s`` if given)."""

    valid: bool
    summary: str
    gap_s: float
    gap_start: float
    gap_end: float
    first_failed_at: float | None
    first_ok_after_fault_at: float | None
    resumed_before_heal: bool | None
    budget_s: float | None


def check_write_gap(history: list[Op], fault_at: float, heal_at: float | None = None, *,
                    budget_s: float | None = None, until: float | None = None) -> GapVerdict:
    """Write unavailability (RTO) around a fault injected at ``fault_at`` (wall clock), up to ``until``
    (default: the end of the history; pass it when later faults follow). Without any write
    acknowledged after the fault, the gap runs to the end and is invalid."""
    history = [op for op in history if until is None or op.end <= until]
    writes = _writes(history)
    ok_ends = sorted(op.end for op in writes if op.outcome == "ok")
    before = [t for t in ok_ends if t <= fault_at]
    after = [t for t in ok_ends if t > fault_at]
    first_ok = min((op.end for op in writes if op.outcome == "ok" and op.start >= fault_at), default=None)
    first_failed = min((op.end for op in writes if op.outcome != "ok" and op.end >= fault_at), default=None)
    history_end = until if until is not None else max((op.end for op in history), default=fault_at)
    points = (before[-1:] or [fault_at]) + after
    if first_ok is None:  # writes never resumed: the gap is open until the end of the history
        points.append(max(history_end, points[-1]))
    gap_start, gap_end = max(zip(points, points[1:]), key=lambda p: p[1] - p[0])
    gap = gap_end - gap_start
    resumed_before_heal = None if heal_at is None else first_ok is not None and first_ok < heal_at
    valid = first_ok is not None and (budget_s is None or gap <= budget_s)
    budget = "" if budget_s is None else f" (budget {budget_s:.1f} s)"
    if first_ok is None:
        summary = f"Writes never resumed after the fault: no acknowledged write for {gap:.2f} s until the end{budget}."
    else:
        summary = (f"Longest write gap {gap:.2f} s{budget}; first failure {_rel(first_failed, fault_at)}, "
                   f"first acknowledged write {_rel(first_ok, fault_at)} after the fault"
                   + ("" if heal_at is None else f", {'before' if resumed_before_heal else 'after'} the heal") + ".")
    return GapVerdict(valid, summary, gap, gap_start, gap_end, first_failed, first_ok, resumed_before_heal, budget_s)


def _rel(t: float | None, fault_at: float) -> str:
    return "none" if t is None else f"+{t - fault_at:.2f} s"


@dataclass(frozen=True)
class WriterVerdict:
    """``epochs``: (server, timeline) in the order they first acknowledged a write; ``overlaps``:
    pairs (newer, stale) of acknowledged writes where ``stale`` was acknowledged by an older epoch
    although it started after ``newer`` (a later epoch's write) had already been acknowledged;
    ``forks``: timelines acknowledged by more than one server."""

    valid: bool
    summary: str
    epochs: tuple[tuple[str, int | None], ...]
    overlaps: tuple[tuple[Op, Op], ...]
    forks: tuple[int, ...]


def check_single_writer(history: list[Op]) -> WriterVerdict:
    """Never two writable primaries acknowledging writes at the same time.

    Acknowledged writes are ordered by completion; each (server, timeline) is an epoch, ranked by
    timeline when every write carries one (a promotion always starts a new timeline), else by the
    order in which servers first acknowledged. With one primary at a time, once a newer epoch has
    acknowledged write ``q``, no older epoch can acknowledge a write ``r`` that started after ``q``
    ended (``q.end < r.start``): the old primary was demoted before the new one was promoted. Each
    such (q, r) pair is reported. Without timelines, a deliberate switch back to a previous primary
    looks like an overlap too (its rank is its first appearance).
    """
    oks = sorted(_writes(history, "ok"), key=lambda op: op.end)
    oks = [op for op in oks if op.server is not None]
    with_tl = bool(oks) and all(op.timeline is not None for op in oks)
    epochs: list[tuple[str, int | None]] = []
    for op in oks:
        epoch = (op.server, op.timeline if with_tl else None)
        if epoch not in epochs:
            epochs.append(epoch)
    servers_of = Counter(tl for _, tl in epochs if tl is not None)
    forks = tuple(sorted(tl for tl, n in servers_of.items() if n > 1))
    first_rank = {server: i for i, server in enumerate(dict.fromkeys(s for s, _ in epochs))}

    def rank(op: Op) -> float:
        return op.timeline if with_tl else first_rank[op.server]

    overlaps = []
    newest: Op | None = None  # among writes ended so far, the earliest-ending one of the highest rank
    by_end = iter(oks)
    pending = next(by_end, None)
    for r in sorted(oks, key=lambda op: op.start):
        while pending is not None and pending.end < r.start:
            if newest is None or rank(pending) > rank(newest):
                newest = pending
            pending = next(by_end, None)
        if newest is not None and rank(newest) > rank(r):
            overlaps.append((newest, r))
    valid = not overlaps and not forks
    if valid:
        summary = (f"One writable primary at a time: {len(oks)} acknowledged writes over "
                   f"{len(epochs)} epoch(s) {_epochs(epochs)}.")
    else:
        parts = []
        if overlaps:
            q, r = overlaps[0]
            parts.append(f"{len(overlaps)} write(s) acknowledged by an older primary after a newer one had "
                         f"acknowledged (first: {r.server} at {r.end:.3f} after {q.server} at {q.end:.3f})")
        if forks:
            parts.append(f"timeline(s) {', '.join(map(str, forks))} served by several servers")
        summary = "Two writable primaries: " + "; ".join(parts) + "."
    return WriterVerdict(valid, summary, tuple(epochs), tuple(overlaps), forks)


def _epochs(epochs: list[tuple[str, int | None]]) -> str:
    return " -> ".join(s if tl is None else f"{s}@{tl}" for s, tl in epochs)


@dataclass(frozen=True)
class Bucket:
    start: float
    ok: int
    fail: int
    unknown: int


@dataclass(frozen=True)
class Throughput:
    """Writes per ``bucket_s`` bucket by completion time, buckets aligned on multiples of ``bucket_s``,
    from the first to the last write (empty buckets included, so a plot shows the gap)."""

    summary: str
    bucket_s: float
    buckets: tuple[Bucket, ...]


def throughput(history: list[Op], bucket_s: float = 1.0) -> Throughput:
    """Per-bucket counts of ok / fail / unknown writes, bucketed by their end time."""
    writes = _writes(history)
    if not writes:
        return Throughput("No writes.", bucket_s, ())
    t0 = math.floor(min(op.end for op in writes) / bucket_s) * bucket_s  # aligned, like fault marks
    n = int(math.floor((max(op.end for op in writes) - t0) / bucket_s)) + 1
    counts = [Counter() for _ in range(n)]
    for op in writes:
        counts[int((op.end - t0) // bucket_s)][op.outcome] += 1
    buckets = tuple(Bucket(t0 + i * bucket_s, c["ok"], c["fail"], c["unknown"]) for i, c in enumerate(counts))
    peak = max(b.ok for b in buckets)
    empty = sum(1 for b in buckets if b.ok == 0)
    summary = (f"{len(writes)} writes over {n} bucket(s) of {bucket_s:g} s: peak {peak} ok per bucket, "
               f"{empty} bucket(s) without an acknowledged write.")
    return Throughput(summary, bucket_s, buckets)
