"""The rolling apply of day two: members whose PostgreSQL waits for a restart are restarted one at a
time, replicas first, then the leader hands over to an up-to-date replica (a switchover: the gap a
client sees is the switchover's) and restarts as a replica. Before every step the whole cluster must
be healthy (one leader, every other member streaming), so never two nodes are out at once; every
wait has a deadline and says what it waited for.

What needs a restart is what Patroni reports (``pending_restart`` per member: PostgreSQL's own
verdict on the settings Patroni wrote), never a list of ours, so a setting changed by hand, a
parameter of context ``postmaster`` or a role change that rewrote ``patroni.yml`` are all covered.
The same order restarts the Patroni daemons that report a release other than the spec's
``patroni.version`` (the role installed it; a daemon runs its new code only once restarted, and
PostgreSQL restarts with it): ``restart_outdated_patroni``.
"""

from __future__ import annotations

import logging
import subprocess
import time
from typing import Callable

from deployer import patroni
from deployer.secrets import Secrets
from deployer.targets.base import Target, TargetError
from deployer.wait import wait_until

log = logging.getLogger("deployer.rolling")


def whole(target: Target, what: str) -> list[patroni.Member]:
    """Wait until one leader runs and every other node streams (``budgets.rejoin_s``); the members."""
    names = sorted(n.name for n in target.spec.nodes)
    return wait_until(
        f"{what}: one running leader and every other member of {names} streaming",
        lambda: patroni.cluster(target),
        lambda ms: sorted(m.name for m in ms) == names
        and [m.state for m in ms if m.role == "leader"] == ["running"]
        and all(m.state == "streaming" for m in ms if m.role == "replica"),
        timeout=target.budgets.rejoin_s, interval=1)


def _cleared(target: Target, node: str) -> bool:
    """Whether ``node`` stops reporting a pending restart within two Patroni loops (it refreshes its
    member key once a loop): False when it still waits for one after its restart."""
    try:
        wait_until(f"{node} no longer pending a restart", lambda: patroni.cluster(target),
                   lambda ms: not any(m.pending_restart for m in ms if m.name == node),
                   timeout=2 * target.spec.patroni.loop_wait + 5, interval=1)
    except AssertionError:
        return False
    return True


def _candidate(members: list[patroni.Member]) -> patroni.Member:
    """The replica to hand the leadership to: streaming, least lag, the synchronous standby first."""
    replicas = [m for m in members if m.role == "replica" and m.state == "streaming" and m.lag_bytes is not None]
    if not replicas:
        raise TargetError("no streaming replica to switch over to: the leader's restart would be an outage")
    return min(replicas, key=lambda m: (not m.sync, m.lag_bytes, m.name))


def restart_pending(target: Target, secrets: Secrets, progress: Callable[[str], None] = log.info) -> list[str]:
    """Restart every member Patroni reports ``pending_restart``, as the module says; one sentence per
    step taken (empty: nothing was pending). A replica still pending after its restart runs a value
    its leader's bounds (a hot standby keeps ``max_connections`` and its kind at least the primary's,
    so a decrease starts on the leader): then the leader restarts in place first, and the replicas
    again. TargetError naming the member and what it did not do."""
    done: list[str] = []
    stuck: set[str] = set()  # replicas restarted that still wait for their leader's restart
    for _ in range(3 * len(target.spec.nodes) + 2):  # each step clears a member or unblocks some: a bound
        members = whole(target, "before the next restart")
        pending = [m for m in members if m.pending_restart]
        if not pending:
            return done
        leader = next(m for m in members if m.role == "leader")
        replica = next((m for m in pending if m.role == "replica" and m.name not in stuck), None)
        start = time.monotonic()
        if replica:
            progress(f"rolling restart: {replica.name} (a replica)")
            patroni.post(target, replica.name, "/restart", {"restart_pending": True}, secrets["rest_api"])
            whole(target, f"{replica.name} streaming again after its restart")
            if _cleared(target, replica.name):
                done.append(f"Restarted {replica.name}'s PostgreSQL (a replica pending restart); it streamed again "
                            f"{time.monotonic() - start:.1f} s later.")
            else:
                stuck.add(replica.name)
                done.append(f"Restarted {replica.name}'s PostgreSQL; it still waits for a restart: its leader "
                            f"{leader.name} bounds a setting (a decrease starts on the leader).")
        elif stuck and leader.pending_restart:
            progress(f"rolling restart: {leader.name} in place (the leader first, for a decrease)")
            patroni.post(target, leader.name, "/restart", {"restart_pending": True}, secrets["rest_api"])
            whole(target, f"{leader.name} leading again after its restart in place")
            stuck.clear()
            done.append(f"Restarted the leader {leader.name}'s PostgreSQL in place (replicas cannot run a setting "
                        f"below their primary's); writes paused for its restart, {time.monotonic() - start:.1f} s.")
        elif leader.pending_restart:
            to = _candidate(members)
            progress(f"rolling restart: switchover {leader.name} -> {to.name}")
            patroni.post(target, leader.name, "/switchover", {"leader": leader.name, "candidate": to.name},
                         secrets["rest_api"])
            whole(target, f"{leader.name} streaming from {to.name} after the switchover")
            _cleared(target, leader.name)
            done.append(f"Switched over from {leader.name} (the leader, pending restart) to {to.name}, an up-to-date "
                        f"replica; {leader.name} restarted as a replica, {time.monotonic() - start:.1f} s.")
        else:
            stuck.clear()  # the leader runs the new values now: the replicas can take them
            continue
        log.info("%s", done[-1])
    still = [m.name for m in patroni.cluster(target) if m.pending_restart]
    raise TargetError(f"members still pending a restart after the rolling apply: {', '.join(still)}")


def _release(target: Target, node: str) -> str:
    return patroni.get(target, node, "/patroni").get("patroni", {}).get("version", "unknown")


def restart_outdated_patroni(target: Target, secrets: Secrets, progress: Callable[[str], None] = log.info) -> list[str]:
    """Restart, one member at a time, every Patroni daemon whose running release (``GET /patroni``)
    is not the spec's: replicas first, the leader after a switchover to an up-to-date replica, each
    back and the cluster whole before the next. One sentence per restart (empty: every member runs
    the spec's release). TargetError naming the member whose restart did not bring the release."""
    want, done = target.spec.patroni.version, []
    for _ in range(2 * len(target.spec.nodes)):
        members = whole(target, "before the next Patroni restart")
        running = {m.name: _release(target, m.name) for m in members}
        outdated = [m for m in members if running[m.name] != want]
        if not outdated:
            return done
        member = next((m for m in outdated if m.role == "replica"), outdated[0])
        start, how = time.monotonic(), "a replica"
        if member.role == "leader":
            to = _candidate(members)
            progress(f"rolling Patroni restart: switchover {member.name} -> {to.name}")
            patroni.post(target, member.name, "/switchover", {"leader": member.name, "candidate": to.name},
                         secrets["rest_api"])
            whole(target, f"{member.name} streaming from {to.name} after the switchover")
            how = f"the leader, after a switchover to {to.name}"
        progress(f"rolling Patroni restart: {member.name} ({running[member.name]} -> {want})")
        proc = subprocess.run(target.host(member.name).ssh_argv(["sudo", "systemctl", "restart", "patroni"]),
                              capture_output=True, text=True, timeout=target.budgets.rejoin_s)
        if proc.returncode != 0:
            raise TargetError(f"on {member.name}: systemctl restart patroni failed: {proc.stderr.strip()[-300:]}")
        whole(target, f"{member.name} streaming again after its Patroni restart")
        if (now := _release(target, member.name)) != want:
            raise TargetError(f"{member.name}'s Patroni runs {now} after its restart, the spec says {want}: "
                              "the release installed on it is not the spec's")
        done.append(f"Restarted {member.name}'s Patroni ({how}): {running[member.name]} -> {want}, streaming again "
                    f"{time.monotonic() - start:.1f} s later.")
        log.info("%s", done[-1])
    raise TargetError(f"members still running another Patroni release than {want} after the rolling restart")
