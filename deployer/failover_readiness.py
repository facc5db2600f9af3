"""Would the cluster fail over if its leader died now, and to whom? A pure verdict over what Patroni
itself reports, following Patroni 4.1's own rules (``patroni/ha.py``: ``is_healthiest_node``,
``_is_healthiest_node``, ``is_lagging``, ``get_failover_candidates``, ``is_failover_possible``;
``patroni/tags.py`` for the tags).

Inputs, as the REST API answers them: ``GET /cluster`` (members, roles, states, lags, tags: the DCS's
member keys, and as roles the ``/sync`` key), ``GET /config`` (the dynamic configuration: ``pause``,
``maximum_lag_on_failover``, ``synchronous_mode``, ``check_timeline``...) and every member's
``GET /patroni`` (its live tags, ``watchdog_failed``, WAL positions), ``None`` where it did not answer.

A replica is ruled out, each reason named, when Patroni would not promote it: its REST API does not
answer, a tag forbids it (``nofailover``, or a ``failover_priority`` <= 0 without ``nofailover``:
Patroni's ``Tags.nofailover``), its watchdog is required but unusable, its WAL position lags the
leader's last reported one by more than ``maximum_lag_on_failover`` (or is unknown), its timeline is
behind the cluster's (with ``check_timeline``), or, under synchronous mode, ``nosync`` (or a
``sync_priority`` <= 0) keeps it from ever being the synchronous standby. Two rules are stricter than
Patroni and say so: it must stream from the leader (the spec's topology), and its *replay* must be
within ``maximum_lag_on_failover`` too (Patroni judges the received position, but a promotion
replays all of it first). Failover as a whole is ruled out when the cluster is paused (maintenance
mode), has no leader, no replica, or, under synchronous mode, no synchronous standby in ``/sync``
(Patroni then promotes none), or when no replica remains. Tags that do not touch promotion
(``noloadbalance``, ``clonefrom``, ``replicatefrom``) rule nothing out; ``nostream`` shows as a
replica that does not stream.

Under synchronous mode only the synchronous standbys are candidates; a replica that qualifies but
is not one is reported as such and rules nothing out. Of the candidates, Patroni promotes the one
furthest ahead, then the highest ``failover_priority`` (``promoted``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

#: Patroni's default ``maximum_lag_on_failover`` (``global_config.maximum_lag_on_failover``).
DEFAULT_MAXIMUM_LAG = 1048576
#: /cluster roles of a member the ``/sync`` key names (``quorum_standby`` under quorum commit).
SYNC_ROLES = ("sync_standby", "quorum_standby")
LEADER_ROLES = ("leader", "standby_leader")


def _true(value) -> bool:
    """Patroni's ``parse_bool`` of a configuration value (``on``/``true``/``yes``/``1``)."""
    return str(value).lower() in ("on", "true", "yes", "1")


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _excluding_tag(tags: Mapping, flag: str, priority: str) -> str | None:
    """Patroni's ``Tags._bool_tag``: the boolean tag decides when present (any truthy value), else a
    priority <= 0 does; the tag that rules the member out, or None."""
    if tags.get(flag) is not None:
        return f"tag {flag}: {tags[flag]}" if bool(tags[flag]) else None
    value = _int(tags.get(priority))
    return f"tag {priority}: {value} (<= 0)" if value is not None and value <= 0 else None


def _priority(tags: Mapping) -> int:
    """Patroni's ``Tags.failover_priority``: 0 with ``nofailover``, else the tag's value, default 1."""
    value = _int(tags.get("failover_priority"))
    return 0 if tags.get("nofailover") else (1 if value is None else value)


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB ({n} bytes)"


@dataclasses.dataclass(frozen=True)
class Readiness:
    """The verdict. ``blockers``: why no failover would happen at all; ``excluded``: member -> why
    Patroni would not promote it (empty when it qualifies); ``candidates``: the replicas it would
    consider now; ``promoted``: of them, the one(s) it would pick; ``not_synchronous``: replicas
    that qualify but, under synchronous mode, are not the synchronous standby (not a problem)."""

    leader: str | None
    candidates: tuple[str, ...]
    promoted: tuple[str, ...]
    blockers: tuple[str, ...]
    excluded: Mapping[str, tuple[str, ...]]
    not_synchronous: tuple[str, ...] = ()

    @property
    def problems(self) -> list[str]:
        """Every reason, one sentence each: failover ruled out, then each member ruled out."""
        return [*self.blockers, *(f"{name} is ruled out: {'; '.join(why)}" for name, why in self.excluded.items() if why)]

    def __str__(self) -> str:
        if self.blockers:
            head = "no failover would happen now"
        else:
            head = f"a failover now would promote {' or '.join(self.promoted)} (candidates: {', '.join(self.candidates)})"
        tail = f"; qualify but are not synchronous standbys: {', '.join(self.not_synchronous)}" if self.not_synchronous else ""
        return f"leader {self.leader}: {head}{tail}" + "".join(f"; {p}" for p in self.problems)


def _member_reasons(member: dict, status: dict | None, *, cluster_lsn_known: bool, max_lag: int, sync: bool,
                    timeline: int | None) -> list[str]:
    reasons = []
    if status is None:
        reasons.append("its Patroni REST API does not answer (Patroni skips a member it cannot ask)")
    for source, tags in (("", member.get("tags") or {}), (" (live, GET /patroni)", (status or {}).get("tags") or {})):
        tag = _excluding_tag(tags, "nofailover", "failover_priority")
        if tag and not any(tag in r for r in reasons):
            reasons.append(f"{tag}{source}: Patroni never promotes it")
        if sync:
            tag = _excluding_tag(tags, "nosync", "sync_priority")
            if tag and not any(tag in r for r in reasons):
                reasons.append(f"{tag}{source}: never a synchronous standby, and under synchronous mode Patroni "
                               "promotes only one")
    if (status or {}).get("watchdog_failed"):
        reasons.append("its watchdog is required but not usable (watchdog_failed): Patroni never promotes it")
    if member.get("state") != "streaming":
        reasons.append(f"state {member.get('state')!r}, not streaming from the leader")
    lag, replay_lag = member.get("lag"), member.get("replay_lag")
    if not isinstance(lag, int):
        reasons.append(f"lag {lag!r}: Patroni counts a member without a WAL position as lagging")
    elif cluster_lsn_known and lag > max_lag:
        reasons.append(f"lag {_mib(lag)} past maximum_lag_on_failover {_mib(max_lag)}: Patroni promotes no "
                       "replica further behind")
    if isinstance(replay_lag, int) and replay_lag > max_lag and not (isinstance(lag, int) and lag > max_lag):
        paused = " (its replay is paused)" if ((status or {}).get("xlog") or {}).get("paused") else ""
        reasons.append(f"replay lag {_mib(replay_lag)}{paused} past maximum_lag_on_failover {_mib(max_lag)}: "
                       "a promotion must replay it all first")
    if timeline is not None and (not member.get("timeline") or member["timeline"] < timeline):
        reasons.append(f"timeline {member.get('timeline')} behind the cluster's {timeline} (check_timeline)")
    return reasons


def readiness(nodes: Sequence[str], cluster: dict, config: dict, statuses: Mapping[str, dict | None]) -> Readiness:
    """The verdict for the spec's ``nodes`` from ``GET /cluster``, ``GET /config`` and each node's
    ``GET /patroni`` (``None``: it did not answer). A node of the spec missing from ``/cluster`` is
    ruled out (its Patroni holds no member key)."""
    members = {m["name"]: m for m in cluster.get("members", [])}
    leaders = [name for name, m in members.items() if m.get("role") in LEADER_ROLES]
    leader = leaders[0] if len(leaders) == 1 else None
    max_lag = _int(config.get("maximum_lag_on_failover"))
    max_lag = DEFAULT_MAXIMUM_LAG if max_lag is None else max_lag
    sync = (_true(config.get("synchronous_mode")) or str(config.get("synchronous_mode")).lower() == "quorum") \
        and not config.get("standby_cluster")
    timeline = members[leader].get("timeline") if leader and _true(config.get("check_timeline")) else None
    blockers = []
    if cluster.get("pause") or _true(config.get("pause")):
        blockers.append("the cluster is paused (maintenance mode): Patroni fails over by itself no more")
    if leader is None:
        blockers.append(f"Patroni reports {len(leaders)} leaders ({', '.join(leaders) or 'none'}), not one")
    excluded: dict[str, tuple[str, ...]] = {}
    for name in [n for n in nodes if n != leader] + sorted(set(members) - set(nodes) - {leader}):
        if name not in members:
            excluded[name] = ("not a member of the cluster (no member key in the DCS: its Patroni is not running)",)
        else:
            excluded[name] = tuple(_member_reasons(members[name], statuses.get(name), cluster_lsn_known=leader is not None,
                                                   max_lag=max_lag, sync=sync, timeline=timeline))
    replicas = [name for name in excluded if name in members]
    qualified = [name for name in replicas if not excluded[name]]
    synchronous = [name for name in replicas if members[name].get("role") in SYNC_ROLES]
    if not replicas:
        blockers.append("no replica: nothing to fail over to")
    elif sync and leader is not None and not synchronous:
        blockers.append("synchronous_mode is on and Patroni names no synchronous standby (/sync): it promotes none")
    candidates = [name for name in qualified if not sync or name in synchronous]
    if replicas and not candidates and not blockers:
        blockers.append("no replica qualifies")
    ahead = {name: -(members[name].get("lag") or 0) for name in candidates}
    best = max(((ahead[n], _priority(members[n].get("tags") or {})) for n in candidates), default=None)
    promoted = tuple(n for n in candidates if (ahead[n], _priority(members[n].get("tags") or {})) == best)
    return Readiness(leader=leader, candidates=tuple(candidates), promoted=promoted if not blockers else (),
                     blockers=tuple(blockers), excluded=excluded,
                     not_synchronous=tuple(n for n in qualified if sync and n not in synchronous))


def watchdog_problems(leader: str, status: dict, holders: Sequence[str]) -> list[str]:
    """Is Patroni's watchdog armed on the ``leader``? ``status``: its ``GET /patroni``; ``holders``:
    the command lines of the processes that hold the watchdog device open there, as the kernel
    reports them (``/proc/*/fd``). Patroni opens the device only when it activates the watchdog, as
    the leader, and reports ``watchdog_failed`` when a required one is unusable."""
    out = []
    if status.get("watchdog_failed"):
        out.append(f"Patroni on {leader} reports its watchdog failed (watchdog_failed)")
    if not any("patroni" in h for h in holders):
        out.append(f"no Patroni process on {leader} holds the watchdog device open (holders: {list(holders) or 'none'})")
    return out
