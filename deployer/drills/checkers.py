"""Checkers (Jepsen's checker role): pure functions turning a recorded history (``load.history``)
into a verdict with numbers, a ``valid`` flag and a one-line ``summary``.

- ``check_set``: no acknowledged write lost (direct ones counted apart), nothing appeared that was
  never attempted.
- ``check_point_in_time``: a cluster restored to a point in time holds every write acknowledged before
  it and none started after it.
- ``check_restore_latest``: a cluster lost and restored from the latest archived WAL lost only a tail
  of acknowledged writes, no older than the RPO, without holes.
- ``check_write_gap``: the longest write unavailability through the frontend around a fault (the RTO).
- ``check_sequential_gap``: the same for one sequential client (``SEQUENTIAL_CLIENTS``), and where
  its time went.
- ``split_gap``: a write gap split at the observed events (detection, election, HAProxy, load balancer).
- ``check_single_writer``: never two writable primaries acknowledging frontend writes at the same time.
- ``check_zombie``: how long an old primary still acknowledged direct writes after a newer one took over.
- ``check_stale_reads``: a replica never hides an acknowledged key longer than the expected lag.
- ``check_converged``: the stack converged within its budget after the heal.
- ``throughput``: ok / fail / unknown writes per time bucket, for the timeline plot.

Writes are told apart by ``Op.client``: the frontend's (``FRONTEND``: Locust and the sequential clients,
through the load balancer) measure availability and single-writer; ``direct`` writes (straight to one
node) measure a zombie primary; every write counts for the set.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from load.history import CLIENTS, SEQUENTIAL_CLIENTS, Op

#: The clients whose writes go through the load balancer's frontend.
FRONTEND = ("locust", *SEQUENTIAL_CLIENTS)
#: A primary's term as writes see it: (server, timeline), the timeline None when writes lack it.
Epoch = tuple[str, int | None]


def _writes(history: list[Op], outcome: str | None = None, clients: tuple[str, ...] = CLIENTS) -> list[Op]:
    return [op for op in history
            if op.kind == "write" and op.client in clients and (outcome is None or op.outcome == outcome)]


def _acked(history: list[Op], clients: tuple[str, ...]) -> list[Op]:
    """The acknowledged writes of ``clients`` naming their server, by completion."""
    return [op for op in sorted(_writes(history, "ok", clients), key=lambda op: op.end) if op.server is not None]


def _sample(keys: frozenset[str], n: int = 3) -> str:
    return ", ".join(sorted(keys)[:n]) + (", ..." if len(keys) > n else "")


def _named(sets: tuple[tuple[str, frozenset[str]], ...]) -> list[str]:
    """"<count> <name> (<sample>)" for each non-empty (name, keys)."""
    return [f"{len(s)} {name} ({_sample(s)})" for name, s in sets if s]


def _failed_only(writes: list[Op]) -> frozenset[str]:
    """The keys of ``writes`` whose every attempt failed: certainly never applied."""
    return frozenset(op.key for op in writes) - {op.key for op in writes if op.outcome != "fail"}


def _earliest(ops: list[Op], field: str) -> dict[str, float]:
    """Each key's earliest ``start`` or ``end`` (``field``) among ``ops``."""
    first: dict[str, float] = {}
    for op in ops:
        first[op.key] = min(getattr(op, field), first.get(op.key, math.inf))
    return first


@dataclass(frozen=True)
class SetVerdict:
    """``lost``: acknowledged frontend writes missing from the final read; ``unexpected``: keys read that were
    never attempted; ``recovered``/``never_applied``: unknown writes present/absent (both fine);
    ``failed_present``: writes reported failed yet present (the client was told "certainly not");
    ``lost_direct``: acknowledged ``direct`` writes missing (a zombie primary's writes rewound), apart
    from ``lost`` (the frontend's). ``ok``/``fail``/``unknown`` count every client's writes."""

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
    lost_direct: frozenset[str]


def check_set(history: list[Op], final_keys: set[str], *, require_direct: bool = True) -> SetVerdict:
    """Jepsen's set checker (as in Patroni's Jepsen test) over the writes of ``history`` (every client)
    and the keys read at the end (after heal, from the primary). Valid iff nothing lost, nothing
    unexpected and no failed write present (a ``fail`` outcome claims the write certainly did not
    happen). A lost direct write is reported either way; ``require_direct=False`` tolerates it (with
    asynchronous replication a primary cut off from the others may acknowledge writes that its
    rewind later discards)."""
    final = frozenset(final_keys)
    by = {o: {op.key for op in _writes(history, o)} for o in ("ok", "fail", "unknown")}
    attempted = {op.key for op in _writes(history)}
    frontend_ok = {op.key for op in _writes(history, "ok", FRONTEND)}
    lost = frozenset(frontend_ok - final)
    lost_direct = frozenset(by["ok"] - frontend_ok - final)
    unexpected = frozenset(final - attempted)
    recovered = frozenset(by["unknown"] & final)
    never_applied = frozenset(by["unknown"] - final)
    failed_present = _failed_only(_writes(history)) & final
    valid = not (lost or unexpected or failed_present or require_direct and lost_direct)
    counts = f"{len(by['ok'])} ok, {len(by['fail'])} failed, {len(by['unknown'])} unknown writes"
    direct = f"acknowledged direct writes lost (zombie primary{'' if require_direct else ', not required'})"
    problems = _named((("lost", lost), (direct, lost_direct), ("unexpected", unexpected),
                       ("failed but present", failed_present)))
    summary = (f"{counts}: " + ("; ".join(problems) if problems else "none lost, none unexpected")
               + f"; {len(recovered)} unknown recovered, {len(never_applied)} never applied.")
    return SetVerdict(valid, summary, len(by["ok"]), len(by["fail"]), len(by["unknown"]),
                      lost, unexpected, recovered, never_applied, failed_present, lost_direct)


@dataclass(frozen=True)
class PointInTimeVerdict:
    """A cluster restored to the point in time ``target`` against the writes of the history (every
    client). ``acknowledged_before``: how many keys were acknowledged (``ok``) with ``end`` before the
    target (minus ``slack_s``): they must be present; ``started_after``: how many keys had every attempt
    start after the target (plus ``slack_s``): they must be absent, whatever their outcome. ``missing_before`` and
    ``present_after`` break those rules; ``unexpected``: keys present never attempted;
    ``failed_present``: keys whose every attempt by the target failed, yet present (as in
    ``SetVerdict``). The rest may be either way, ``in_flight_present``/``in_flight_absent``: acknowledged
    writes in flight at the target (``start <= target <= end``, widened by ``slack_s``) and ``unknown``
    writes started by then (their commit, if any, lies anywhere after their start). Valid iff nothing
    missing, present after, unexpected or failed but present."""

    valid: bool
    summary: str
    target: float
    slack_s: float
    acknowledged_before: int
    started_after: int
    missing_before: frozenset[str]
    present_after: frozenset[str]
    unexpected: frozenset[str]
    failed_present: frozenset[str]
    in_flight_present: frozenset[str]
    in_flight_absent: frozenset[str]


def check_point_in_time(history: list[Op], target: float, present_keys: set[str], *,
                        slack_s: float = 0.0) -> PointInTimeVerdict:
    """Judge ``present_keys`` (read from a cluster restored to ``target``, a Unix time on the history's
    clock) against ``history``: every write acknowledged before the target present, none started after
    it present (see ``PointInTimeVerdict``).

    ``slack_s`` widens the in-flight window to ``[target - slack_s, target + slack_s]``: PostgreSQL stops
    recovery at commit timestamps from the primary's clock, while ``start``/``end`` come from the
    workload host's, and the two may differ slightly (NTP keeps them within milliseconds, not zero).
    A write inside that margin is judged neither way. Pass the clocks' bound, 0 when they are one clock.
    """
    present = frozenset(present_keys)
    writes = _writes(history)
    by_target = [op for op in writes if op.start <= target + slack_s]
    attempted, started = frozenset(op.key for op in writes), frozenset(op.key for op in by_target)
    before = frozenset(op.key for op in by_target if op.outcome == "ok" and op.end < target - slack_s)
    failed = _failed_only(by_target)
    after, either = attempted - started, started - before - failed
    missing, late = before - present, after & present
    unexpected, failed_present = present - attempted, failed & present
    problems = _named((("acknowledged before the target missing", missing),
                       ("started after the target present", late), ("unexpected", unexpected),
                       ("failed but present", failed_present)))
    summary = (f"Restored to {target:.3f} (slack {slack_s:g} s): {len(before)} writes acknowledged before, "
               f"{len(after)} started after: " + ("; ".join(problems) or "none missing, none after, none unexpected")
               + f"; {len(either & present)} in flight or unknown present, {len(either - present)} absent.")
    return PointInTimeVerdict(not problems, summary, target, slack_s, len(before), len(after), missing, late,
                              unexpected, failed_present, either & present, either - present)


@dataclass(frozen=True)
class RestoreLatestVerdict:
    """A cluster lost at ``lost_at`` and restored from the latest archived WAL, against the writes of
    the history (every client). ``acknowledged``: how many keys were acknowledged before the loss
    (``end < lost_at``); ``lost``: those missing; ``holes``: lost keys acknowledged before some write present
    had even started (a write that started after ``m`` ended committed after ``m``, so a replay of WAL
    up to any point holding it holds ``m``): a restore loses a tail, never a hole. ``rpo_measured_s``:
    ``lost_at`` minus the ``end`` of the earliest lost key (0.0 when none is lost); ``unexpected``:
    keys present never attempted; ``failed_present`` as in ``SetVerdict``. Valid iff ``rpo_measured_s
    <= rpo_s`` and no hole, nothing unexpected, no failed write present."""

    valid: bool
    summary: str
    lost_at: float
    acknowledged: int
    lost: frozenset[str]
    holes: frozenset[str]
    unexpected: frozenset[str]
    failed_present: frozenset[str]
    rpo_measured_s: float
    rpo_s: float


def check_restore_latest(history: list[Op], present_keys: set[str], lost_at: float,
                         rpo_s: float) -> RestoreLatestVerdict:
    """Judge ``present_keys`` (read from the cluster restored after the loss at ``lost_at``) against
    ``history`` with the promised RPO ``rpo_s`` (see ``RestoreLatestVerdict``). Writes started after the
    loss (the load resuming on the restored cluster) count only as attempted: they neither prove a
    hole nor are judged lost."""
    present = frozenset(present_keys)
    writes = _writes(history)
    acked = _earliest([op for op in _writes(history, "ok") if op.end < lost_at], "end")
    starts = _earliest([op for op in writes if op.start < lost_at], "start")
    lost = frozenset(acked) - present
    last_start = max((starts[k] for k in present & starts.keys()), default=-math.inf)
    holes = frozenset(k for k in lost if acked[k] < last_start)
    rpo = lost_at - min((acked[k] for k in lost), default=lost_at)
    unexpected = present - {op.key for op in writes}
    failed_present = _failed_only(writes) & present
    valid = rpo <= rpo_s and not (holes or unexpected or failed_present)
    problems = _named((("lost", lost), ("missing though a later write is present (holes)", holes),
                       ("unexpected", unexpected), ("failed but present", failed_present)))
    summary = (f"{len(acked)} writes acknowledged before the loss: " + ("; ".join(problems) or "none lost")
               + f"; RPO {rpo:.2f} s ({'within' if rpo <= rpo_s else 'over'} the budget {rpo_s:.1f} s).")
    return RestoreLatestVerdict(valid, summary, lost_at, len(acked), lost, holes, unexpected, failed_present,
                                rpo, rpo_s)


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
    """Write unavailability (RTO) through the frontend (``FRONTEND`` clients) around a fault injected at
    ``fault_at`` (wall clock), up to ``until`` (default: the end of the history; pass it when later
    faults follow). Without any write acknowledged after the fault, the gap runs to the end and is
    invalid."""
    history = [op for op in history if until is None or op.end <= until]
    writes = _writes(history, clients=FRONTEND)
    gap_start, gap_end, first_ok = _gap(writes, fault_at, _end(history, fault_at, until))
    first_failed = min((op.end for op in writes if op.outcome != "ok" and op.end >= fault_at), default=None)
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


def _end(history: list[Op], fault_at: float, until: float | None) -> float:
    return until if until is not None else max((op.end for op in history), default=fault_at)


def _gap(writes: list[Op], fault_at: float, end: float) -> tuple[float, float, float | None]:
    """(start, end, first ok) of the longest stretch between consecutive acknowledged ``writes``, from the
    last one ending at or before ``fault_at`` (or the fault itself), open until ``end`` when no write
    started after the fault was acknowledged; first ok: the end of the first such write."""
    ok_ends = sorted(op.end for op in writes if op.outcome == "ok")
    first_ok = min((op.end for op in writes if op.outcome == "ok" and op.start >= fault_at), default=None)
    points = ([t for t in ok_ends if t <= fault_at][-1:] or [fault_at]) + [t for t in ok_ends if t > fault_at]
    if first_ok is None:  # writes never resumed: the gap is open until the end of the history
        points.append(max(end, points[-1]))
    start, stop = max(zip(points, points[1:]), key=lambda p: p[1] - p[0])
    return start, stop, first_ok


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
    epochs: tuple[Epoch, ...]
    overlaps: tuple[tuple[Op, Op], ...]
    forks: tuple[int, ...]


def check_single_writer(history: list[Op]) -> WriterVerdict:
    """Never two writable primaries acknowledging writes through the frontend (``FRONTEND``) at once.

    Acknowledged writes are ordered by completion; each (server, timeline) is an epoch, ranked by
    timeline when every write carries one (a promotion always starts a new timeline), else by the
    order in which servers first acknowledged. With one primary at a time, once a newer epoch has
    acknowledged write ``q``, no older epoch can acknowledge a write ``r`` that started after ``q``
    ended (``q.end < r.start``): the old primary was demoted before the new one was promoted. Each
    such (q, r) pair is reported. Without timelines, a deliberate switch back to a previous primary
    looks like an overlap too (its rank is its first appearance).
    """
    oks = _acked(history, FRONTEND)
    epochs, ranks, epoch = _ranked(oks)
    servers_of = Counter(tl for _, tl in epochs if tl is not None)
    forks = tuple(sorted(tl for tl, n in servers_of.items() if n > 1))

    def rank(op: Op) -> float:
        return ranks[epoch(op)]

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


def _ranked(oks: list[Op]) -> tuple[list[Epoch], dict[Epoch, float], Callable[[Op], Epoch]]:
    """The epochs (server, timeline) of acknowledged writes ``oks`` (by completion) in the order they
    first acknowledged, each epoch's rank (its timeline when every write carries one, else the order
    in which its server first acknowledged) and the function giving a write's epoch."""
    with_tl = bool(oks) and all(op.timeline is not None for op in oks)

    def epoch(op: Op) -> Epoch:
        return op.server, op.timeline if with_tl else None

    epochs = list(dict.fromkeys(map(epoch, oks)))
    first = {server: i for i, server in enumerate(dict.fromkeys(s for s, _ in epochs))}
    return epochs, {e: e[1] if with_tl else first[e[0]] for e in epochs}, epoch


def _epochs(epochs: list[Epoch]) -> str:
    return " -> ".join(s if tl is None else f"{s}@{tl}" for s, tl in epochs)


@dataclass(frozen=True)
class ZombieVerdict:
    """From the ``direct`` writes (straight to one node's PostgreSQL, not through the frontend):
    ``epochs`` as in ``WriterVerdict``; ``zombie_primary_s``: the longest time an older epoch still
    acknowledged direct writes after a newer one had taken over (its last acknowledgement minus the
    newer epoch's start), 0.0 if never; ``zombie_writes``: the direct writes older epochs acknowledged
    after that start; ``servers``: the servers that did, longest window first. Valid iff
    ``zombie_primary_s == 0``."""

    valid: bool
    summary: str
    zombie_primary_s: float
    zombie_writes: int
    servers: tuple[str, ...]
    epochs: tuple[Epoch, ...]


def check_zombie(history: list[Op], promoted_at: float | None = None) -> ZombieVerdict:
    """Two writable primaries seen directly: after a newer primary took over, an older one still
    acknowledged direct writes.

    Epochs are ranked as in ``check_single_writer``. An epoch starts with the end of its first
    acknowledged direct write; ``promoted_at`` (the promotion the platform reported) starts the newest
    epoch instead when earlier (a primary exists from its promotion, before a direct write reaches
    it). An older epoch is superseded from the earliest start of any newer one; each of its
    acknowledgements ending after that is a stale write. A newest primary that no direct write ever
    reached is not seen: without a newer epoch, nothing is stale.
    """
    oks = _acked(history, ("direct",))
    epochs, ranks, epoch = _ranked(oks)
    ends = {e: [op.end for op in oks if epoch(op) == e] for e in epochs}
    newest = max(ranks.values(), default=None)
    start = {e: min(t[0], promoted_at) if promoted_at is not None and ranks[e] == newest else t[0]
             for e, t in ends.items()}
    windows: dict[Epoch, tuple[float, Epoch]] = {}
    stale = 0
    for e in epochs:
        newer = [n for n in epochs if ranks[n] > ranks[e]]
        if newer:
            by = min(newer, key=start.__getitem__)
            late = [t for t in ends[e] if t > start[by]]
            if late:
                windows[e] = late[-1] - start[by], by
                stale += len(late)
    worst = sorted(windows, key=lambda e: -windows[e][0])
    zombie_s = windows[worst[0]][0] if worst else 0.0
    servers = tuple(dict.fromkeys(s for s, _ in worst))
    if not worst:
        summary = (f"No zombie primary: {len(oks)} acknowledged direct writes"
                   + (f" over {len(epochs)} epoch(s) {_epochs(epochs)}." if epochs else "."))
    else:
        summary = (f"Zombie primary: {servers[0]} still acknowledged direct writes {zombie_s:.2f} s after "
                   f"{_epochs([windows[worst[0]][1]])} took over; {stale} stale acknowledged direct write(s) "
                   f"from {', '.join(servers)}.")
    return ZombieVerdict(not worst, summary, zombie_s, stale, servers, tuple(epochs))


@dataclass(frozen=True)
class StaleVerdict:
    """``reads``: acknowledged reads; ``stale``: those that did not see their key (``error == "stale"``),
    each aged from the end of the key's first acknowledged write to the read's start. Within
    ``visible_s`` that is asynchronous replication lag (expected); older, the replica hid a key long
    acknowledged: ``too_stale`` holds (key, server, age in s), oldest first. ``max_age_s``: the oldest
    stale read's age (0.0 without any); ``unacknowledged``: stale reads of keys no write acknowledged
    (not judged: nothing promised them). Valid iff ``too_stale`` is empty."""

    valid: bool
    summary: str
    reads: int
    stale: int
    max_age_s: float
    visible_s: float
    too_stale: tuple[tuple[str, str | None, float], ...]
    unacknowledged: int


def check_stale_reads(history: list[Op], visible_s: float) -> StaleVerdict:
    """Reads that missed an acknowledged key: fine within ``visible_s`` of the acknowledgement
    (a key acknowledged ``visible_s`` before the read started may still be missing), invalid later."""
    acked = _earliest(_writes(history, "ok"), "end")
    reads = [op for op in history if op.kind == "read" and op.outcome == "ok"]
    stale = [op for op in reads if op.error == "stale"]
    ages = [(op.start - acked[op.key], op) for op in stale if op.key in acked]
    too = tuple(sorted(((op.key, op.server, age) for age, op in ages if age > visible_s), key=lambda t: -t[2]))
    max_age = max([0.0] + [age for age, _ in ages])
    counts = f"{len(reads)} reads, {len(stale)} stale"
    if too:
        named = ", ".join(f"{k} on {s} ({a:.2f} s)" for k, s, a in too[:3]) + (", ..." if len(too) > 3 else "")
        summary = f"{counts}: {len(too)} still missing more than {visible_s:g} s after the acknowledgement ({named})"
    else:
        summary = f"{counts}, all within {visible_s:g} s of the acknowledgement (oldest {max_age:.2f} s)"
    unacked = len(stale) - len(ages)
    summary += f"; {unacked} of keys never acknowledged (not judged)." if unacked else "."
    return StaleVerdict(not too, summary, len(reads), len(stale), max_age, visible_s, too, unacked)


#: Error classes of ``Op.error`` by lower-case substring; the first class matching wins, else "other".
ERROR_CLASSES = (
    ("connect timeout", ("connectiontimeout", "connection timeout", "timeout expired")),
    ("connection refused", ("connection refused",)),
    ("read-only", ("read-only", "readonlysqltransaction")),
    ("starting or stopping", ("starting up", "shutting down", "cannotconnectnow")),
    ("connection lost", ("server closed the connection", "connection is lost", "terminating connection",
                         "connectionfailure", "consuming input failed")),
    ("timeout", ("timeout", "timed out", "canceling statement")),
)


def error_class(op: Op) -> str:
    """``"acknowledged"`` for an ok operation, else the first ``ERROR_CLASSES`` entry its error matches
    (``"other"`` when none does)."""
    if op.outcome == "ok":
        return "acknowledged"
    error = (op.error or "").lower()
    return next((name for name, needles in ERROR_CLASSES if any(n in error for n in needles)), "other")


@dataclass(frozen=True)
class SequentialVerdict:
    """One sequential client (one attempt at a time through the frontend): ``gap_s`` from
    ``gap_start`` to ``gap_end`` and ``first_ok_after_fault_at`` as in ``GapVerdict``, and where the
    gap's time went: ``by_outcome`` and ``by_error`` (seconds of the attempts inside the gap, clipped
    to it, by outcome and by ``error_class``; the write ending the gap counts as ``"acknowledged"``),
    ``attempts`` (how many per error class) and ``idle_s`` (time in the gap outside every attempt).
    One attempt at a time, the seconds by error class and ``idle_s`` add up to ``gap_s``. Valid iff
    writes resumed after the fault (and within ``budget_s`` if given)."""

    valid: bool
    summary: str
    gap_s: float
    gap_start: float
    gap_end: float
    first_ok_after_fault_at: float | None
    by_outcome: dict[str, float]
    by_error: dict[str, float]
    attempts: dict[str, int]
    idle_s: float
    budget_s: float | None


def check_sequential_gap(history: list[Op], fault_at: float, *, budget_s: float | None = None,
                         until: float | None = None, client: str = "sequential") -> SequentialVerdict:
    """The write gap of the sequential client ``client`` (one of ``SEQUENTIAL_CLIENTS``; only its
    writes count, never another client's) around the fault at ``fault_at`` (the points of
    ``check_write_gap``, up to ``until``), and its time by outcome, by error class and between
    attempts. Invalid without any write of ``client``; raises ValueError for a client that is not a
    sequential one."""
    if client not in SEQUENTIAL_CLIENTS:
        raise ValueError(f"{client!r} is not a sequential client; they are {', '.join(SEQUENTIAL_CLIENTS)}")
    history = [op for op in history if until is None or op.end <= until]
    writes = _writes(history, clients=(client,))
    start, end, first_ok = _gap(writes, fault_at, _end(history, fault_at, until))
    inside = [(max(op.start, start), min(op.end, end), op) for op in writes if op.end > start and op.start < end]
    by_outcome: Counter[str] = Counter()
    by_error: Counter[str] = Counter()
    attempts: Counter[str] = Counter()
    for lo, hi, op in inside:
        by_outcome[op.outcome] += hi - lo
        by_error[error_class(op)] += hi - lo
        attempts[error_class(op)] += 1
    gap = end - start
    idle = gap - _covered([(lo, hi) for lo, hi, _ in inside])
    valid = bool(writes) and first_ok is not None and (budget_s is None or gap <= budget_s)
    budget = "" if budget_s is None else f" (budget {budget_s:.1f} s)"
    spent = [f"{s:.2f} s in {attempts[c]} {c} attempt(s)" for c, s in sorted(by_error.items(), key=lambda i: -i[1])]
    if not writes:
        summary = f"No {client} writes in the history{budget}."
    else:
        what = "" if first_ok is not None else " after the fault, until the end"
        summary = (f"One {client} client: {gap:.2f} s without an acknowledged write{what}{budget}: "
                   + ", ".join(spent + [f"{idle:.2f} s between attempts"]) + ".")
    return SequentialVerdict(valid, summary, gap, start, end, first_ok, dict(by_outcome), dict(by_error),
                             dict(attempts), idle, budget_s)


def _covered(spans: list[tuple[float, float]]) -> float:
    """The length of the union of ``spans``."""
    total, reach = 0.0, -math.inf
    for lo, hi in sorted(spans):
        if hi > reach:
            total, reach = total + hi - max(lo, reach), hi
    return total


#: A write gap's parts in order: (part, the event ending it, its name in sentences).
GAP_PARTS = (("detection", "leader_key_gone", "detection"), ("election", "promoted", "election"),
             ("node_haproxy", "haproxies_routed", "node HAProxy"), ("load_balancer", "lb_routed", "load balancer"))


@dataclass(frozen=True)
class GapParts:
    """A write gap split at the events the drill observed, each part the time since the previous
    observed event (the first since the fault): ``parts`` (the observed ones, in order, seconds),
    ``unobserved`` (parts whose event is missing: their time folds into the next observed part),
    ``out_of_order`` (parts whose event was observed before the previous one: left out rather than
    given a negative duration, their time folds into the next part too), ``slowest`` (the longest
    part; "" when none), ``other_s`` (``gap_s`` minus the parts: the gap's time before the fault and
    after the last observed event; negative when the events run past the gap). Valid iff nothing is
    out of order."""

    valid: bool
    summary: str
    gap_s: float
    parts: dict[str, float]
    unobserved: tuple[str, ...]
    out_of_order: tuple[str, ...]
    slowest: str
    other_s: float


def split_gap(fault_at: float, events: dict[str, float | None], gap: GapVerdict) -> GapParts:
    """Split ``gap`` (from ``check_write_gap``) at the wall-clock ``events`` observed after the fault at
    ``fault_at``: ``leader_key_gone`` (the DCS leader key absent or expired), ``promoted`` (the new
    timeline started, from Patroni's /history), ``haproxies_routed`` (every node's HAProxy routes 5000
    to the new leader), ``lb_routed`` (the first write acknowledged through the frontend after the fault,
    by the new leader). None or absent: not observed. Raises ValueError on any other event name."""
    unknown = sorted(set(events) - {event for _, event, _ in GAP_PARTS})
    if unknown:
        raise ValueError(f"unknown gap event(s) {', '.join(unknown)}; known: "
                         + ", ".join(event for _, event, _ in GAP_PARTS))
    parts: dict[str, float] = {}
    unobserved, out_of_order, problems = [], [], []
    prev, prev_name = fault_at, "the fault"
    for part, event, _ in GAP_PARTS:
        t = events.get(event)
        if t is None:
            unobserved.append(part)
        elif t < prev:
            out_of_order.append(part)
            problems.append(f"{event} observed {prev - t:.2f} s before {prev_name}")
        else:
            parts[part], prev, prev_name = t - prev, t, event
    names = {part: name for part, _, name in GAP_PARTS}
    slowest = max(parts, key=parts.__getitem__) if parts else ""
    other = gap.gap_s - sum(parts.values())
    said = ", ".join(f"{names[p]} {s:.2f} s" for p, s in parts.items()) or "no event observed"
    summary = (f"Write gap {gap.gap_s:.2f} s: {said}" + (f", other {other:.2f} s" if round(other, 2) else "")
               + (f" (slowest: {names[slowest]})" if slowest else "")
               + "".join(f"; {label}: {', '.join(items)}" for label, items in
                         (("unobserved", [names[p] for p in unobserved]), ("out of order", problems)) if items) + ".")
    return GapParts(not problems, summary, gap.gap_s, parts, tuple(unobserved), tuple(out_of_order), slowest, other)


@dataclass(frozen=True)
class ConvergeVerdict:
    """How long the stack took to converge after the heal: ``duration_s`` (None when it never did, or
    when convergence was observed before the heal), valid iff at most ``budget_s``."""

    valid: bool
    summary: str
    duration_s: float | None
    budget_s: float


def check_converged(heal_at: float, converged_at: float | None, budget_s: float) -> ConvergeVerdict:
    """Convergence (every check of the spec passing again) observed at ``converged_at`` after the heal at
    ``heal_at``; ``converged_at`` None: never observed. Converging before the heal is invalid (an order
    no real run produces: a wrong timestamp), never a negative duration."""
    budget = f"budget {budget_s:.1f} s"
    if converged_at is None:
        return ConvergeVerdict(False, f"Never converged after the heal ({budget}).", None, budget_s)
    duration = converged_at - heal_at
    if duration < 0:
        return ConvergeVerdict(False, f"Convergence observed {-duration:.2f} s before the heal: out of order "
                                      f"({budget}).", None, budget_s)
    valid = duration <= budget_s
    return ConvergeVerdict(valid, f"Converged {duration:.2f} s after the heal ({'within' if valid else 'over'} "
                                  f"the {budget}).", duration, budget_s)


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
