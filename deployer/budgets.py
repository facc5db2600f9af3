"""Every time budget the deployer, the suites and the drills use, derived from the spec in one place.

A budget is a worst case the spec's settings promise (a drill asserts it); a deadline is how long
a wait may poll before it fails (``wait_until`` scales it by the one timeout multiplier). Both come
from here, so a changed ``ttl`` or probe interval moves every expectation with it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deployer.spec import StackSpec

#: Seconds the load balancer waits for one probe answer (local: ``timeout check``; Azure: the
#: probe's own timeout is shorter than its interval).
LB_PROBE_TIMEOUT_S = 2
#: A restarted or healed node catches up, through pg_rewind if it must, well within this.
REJOIN_S = 90
#: A committed row is visible on every streaming replica within this.
REPLICA_VISIBLE_S = 10
#: A client's reconnect after its server went away (connect_timeout and one retry).
CLIENT_RECONNECT_S = 2
#: A postmaster restarted after a crash accepts connections: ``pg_ctl start``, the data directory's
#: sync and crash recovery of a small database (1-4 s measured here, with other processes running).
POSTMASTER_START_S = 4
#: A killed Patroni is back: systemd's ``RestartSec`` (2 s) and Patroni's own start.
PATRONI_RESTART_S = 8
#: etcd's leadership is handed away from Patroni's leader: the placement daemon's turn (2 s), the
#: transfer (an election timeout at most) and the read-backs that observe it.
ETCD_LEADER_MOVE_S = 6
#: A crashed VM is started, boots and its services run.
VM_BOOT_S = 30


@dataclasses.dataclass(frozen=True)
class Budgets:
    """Budgets of one stack. ``readback_latency_s`` is the target's (``Target.readback_latency_s``):
    a wait that polls a read-back allows for two of them on top of what the platform needs."""

    spec: StackSpec
    readback_latency_s: float = 0.0

    @property
    def haproxy_down_s(self) -> float:
        """A node's HAProxy marks a server down (``HAProxy.down_s``)."""
        return self.spec.haproxy.down_s

    @property
    def haproxy_up_s(self) -> float:
        """A node's HAProxy marks a server up (``HAProxy.up_s``): a promoted leader, a restarted Patroni."""
        return self.spec.haproxy.up_s

    @property
    def haproxy_reroute_s(self) -> float:
        """Every node's HAProxy routes to a new leader: the old one down, the new one up, two checks of slack."""
        return self.haproxy_down_s + self.haproxy_up_s + 2 * self.spec.haproxy.check_inter_ms / 1000

    @property
    def lb_down_s(self) -> float:
        """The load balancer stops sending clients to a member: ``threshold`` failed probes."""
        lb = self.spec.load_balancer
        return lb.probe_interval_s * lb.probe_threshold

    @property
    def lb_settle_s(self) -> float:
        """Deadline for the load balancer to change a member's health, worst case: the failing (or
        passing) probes start just after the last opposite one, plus one probe timeout, plus the
        read-backs that observe it."""
        lb = self.spec.load_balancer
        return lb.probe_interval_s * (lb.probe_threshold + 1) + LB_PROBE_TIMEOUT_S + 2 * self.readback_latency_s

    @property
    def crash_failover_s(self) -> float:
        """Write gap for a crashed or isolated primary: lease expiry, one Patroni loop, the node
        HAProxies and the load balancer marking the dead node down."""
        p = self.spec.patroni
        return p.ttl + p.loop_wait + self.haproxy_down_s + self.lb_down_s

    @property
    def switchover_s(self) -> float:
        """Write gap for a planned switchover: one Patroni loop to demote and promote, the node
        HAProxies marking the old leader down and the new one up, and a client's reconnect (the
        load balancer's members stay healthy throughout)."""
        return self.spec.patroni.loop_wait + self.haproxy_down_s + self.haproxy_up_s + CLIENT_RECONNECT_S

    @property
    def postmaster_restart_s(self) -> float:
        """Write gap for a killed postmaster: Patroni notices within one loop and restarts it in place
        (crash recovery), HAProxy's ``rise`` checks see the leader again, a client reconnects."""
        return self.spec.patroni.loop_wait + POSTMASTER_START_S + self.haproxy_up_s + CLIENT_RECONNECT_S

    @property
    def patroni_restart_s(self) -> float:
        """Write gap for a killed Patroni: PostgreSQL keeps serving, but HAProxy checks Patroni's REST
        API, so the leader is out of the node HAProxies from ``fall`` failed checks until systemd
        restarted Patroni and ``rise`` checks pass, plus a client's reconnect."""
        return PATRONI_RESTART_S + self.haproxy_up_s + CLIENT_RECONNECT_S

    @property
    def member_loss_s(self) -> float:
        """Write gap when a replica or one etcd member goes: none is expected, only a client's reconnect
        and the node HAProxies marking a lost member down; with synchronous mode, commits also wait
        until the walsender to a lost synchronous standby times out and Patroni picks another one."""
        p = self.spec.patroni
        sync = p.wal_sender_timeout_ms / 1000 + p.loop_wait if p.synchronous_mode else 0
        return CLIENT_RECONNECT_S + self.haproxy_down_s + sync

    @property
    def demote_s(self) -> float:
        """A leader that lost the DCS turns read-only within one loop and ``retry_timeout``."""
        p = self.spec.patroni
        return p.loop_wait + p.retry_timeout + CLIENT_RECONNECT_S

    @property
    def quorum_recovery_s(self) -> float:
        """Writes resume after etcd's quorum is back: a leader takes (or renews) the key within a
        lease, the node HAProxies route to it and the load balancer's probes pass again."""
        return self.spec.patroni.ttl + self.spec.patroni.loop_wait + self.haproxy_reroute_s + self.lb_settle_s

    @property
    def cluster_restart_s(self) -> float:
        """Writes resume after every VM was crashed and started: the VMs boot, then as after a quorum loss."""
        return VM_BOOT_S + self.quorum_recovery_s

    @property
    def converge_s(self) -> float:
        """Deadline for a healthy cluster (one leader, every replica streaming, lag 0) from a whole one."""
        return 2 * self.spec.patroni.ttl

    @property
    def failover_ready_s(self) -> float:
        """Deadline for Patroni's reports to show a ready failover: every member publishes its state
        (tags, WAL position) and the leader its last LSN once a loop, so two loops and the read-backs."""
        return 2 * self.spec.patroni.loop_wait + 2 * self.readback_latency_s

    rejoin_s: float = REJOIN_S
    replica_visible_s: float = REPLICA_VISIBLE_S
