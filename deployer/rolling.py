"""The rolling apply of day two: members whose PostgreSQL waits for a restart are restarted one at a
time, replicas first, then the leader hands over to an up-to-date replica (a switchover: the gap a
client sees is the switchover's) and restarts as a replica. Before every step the whole cluster must
be healthy (one leader, every other member streaming), so never two nodes are out at once; every
wait has a deadline and says what it waited for.

What needs a restart is what Patroni reports (``pending_restart`` per member: PostgreSQL's own
verdict on the settings Patroni wrote), never a list of ours, so a setting changed by hand, a
parameter of context ``postmaster`` or a role change that rewrote ``patroni.yml`` are all covered.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from deployer import patroni
from deployer.secrets import Secrets
from deployer.targets.base import Target, TargetError
from deployer.wait import wait_until

log = logging.getLogger("deployer.rolling")


def _whole(target: Target, what: str, restarted: str | None = None) -> list[patroni.Member]:
    """Wait until one leader runs and every other node streams, and the member ``restarted`` no longer
    reports a pending restart (Patroni refreshes it in the DCS at its next loop), within
    ``budgets.rejoin_s``; the members."""
    names = sorted(n.name for n in target.spec.nodes)
    return wait_until(
        f"{what}: one running leader and every other member of {names} streaming"
        + (f", {restarted} no longer pending a restart" if restarted else ""),
        lambda: patroni.cluster(target),
        lambda ms: sorted(m.name for m in ms) == names
        and [m.state for m in ms if m.role == "leader"] == ["running"]
        and all(m.state == "streaming" for m in ms if m.role == "replica")
        and not any(m.pending_restart for m in ms if m.name == restarted),
        timeout=target.budgets.rejoin_s, interval=1)


def _candidate(members: list[patroni.Member]) -> patroni.Member:
    """The replica to hand the leadership to: streaming, least lag, the synchronous standby first."""
    replicas = [m for m in members if m.role == "replica" and m.state == "streaming" and m.lag_bytes is not None]
    if not replicas:
        raise TargetError("no streaming replica to switch over to: the leader's restart would be an outage")
    return min(replicas, key=lambda m: (not m.sync, m.lag_bytes, m.name))


def restart_pending(target: Target, secrets: Secrets, progress: Callable[[str], None] = log.info) -> list[str]:
    """Restart every member Patroni reports ``pending_restart``, as the module says; one sentence per
    step taken (empty: nothing was pending). TargetError naming the member and what it did not do."""
    done: list[str] = []
    for _ in range(2 * len(target.spec.nodes) + 1):  # each step clears one member; a bound, not a loop
        members = _whole(target, "before the next restart")
        pending = [m for m in members if m.pending_restart]
        if not pending:
            return done
        replica = next((m for m in pending if m.role == "replica"), None)
        start = time.monotonic()
        if replica:
            progress(f"rolling restart: {replica.name} (a replica)")
            patroni.post(target, replica.name, "/restart", {"restart_pending": True}, secrets["rest_api"])
            _whole(target, f"{replica.name} streaming again after its restart", restarted=replica.name)
            done.append(f"Restarted {replica.name}'s PostgreSQL (a replica pending restart); the cluster was whole "
                        f"again {time.monotonic() - start:.1f} s later.")
        else:
            leader, to = pending[0], _candidate(members)
            progress(f"rolling restart: switchover {leader.name} -> {to.name}")
            patroni.post(target, leader.name, "/switchover", {"leader": leader.name, "candidate": to.name},
                         secrets["rest_api"])
            _whole(target, f"{leader.name} streaming from {to.name} after the switchover", restarted=leader.name)
            done.append(f"Switched over from {leader.name} (the leader, pending restart) to {to.name}, an up-to-date "
                        f"replica; {leader.name} restarted as a replica and the cluster was whole again "
                        f"{time.monotonic() - start:.1f} s later.")
        log.info("%s", done[-1])
    still = [m.name for m in patroni.cluster(target) if m.pending_restart]
    raise TargetError(f"members still pending a restart after the rolling apply: {', '.join(still)}")
