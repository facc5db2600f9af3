"""Scale in: a node the spec no longer has leaves the cluster before its VM goes, one node at a time,
so that no client and no quorum ever depends on it when it disappears:

1. the load balancer stops sending it new clients (``Target.detach``);
2. if it leads, Patroni hands the leadership to a staying replica (a switchover: the gap a client
   sees is the switchover's);
3. its Patroni stops (PostgreSQL with it), and the others see it leave;
4. its etcd member is removed from the cluster (``etcdctl member remove`` on a staying member),
   then its etcd stops: the quorum shrinks with it, never loses it.

Provision then deletes its VM, configure renders every staying node's HAProxy, Patroni and etcd
without it, and attach finds the pool already without it. Scale out needs no step here: provision
creates the VMs, configure joins them (etcd ``member add``, Patroni clones a replica) and attach adds
them to the pool once healthy.
"""

from __future__ import annotations

import logging

from deployer import patroni
from deployer.rolling import _candidate
from deployer.stack import Stack
from deployer.targets.base import TargetError
from deployer.wait import wait_until

log = logging.getLogger("deployer.scaling")


def retire(deployed: Stack, leaving: list[str]) -> list[str]:
    """Take every node of ``leaving`` out of the cluster, as the module says; ``deployed`` is the
    stack as deployed (its spec still has them). One sentence per node."""
    target, said = deployed.target, []
    if not [n for n in deployed.spec.nodes if n.name not in leaving]:
        raise TargetError(f"scale in would retire every node ({', '.join(leaving)}): no member would keep the data; "
                          "a cluster of all new nodes is a replace")
    for node in leaving:
        staying = [n.name for n in deployed.spec.nodes if n.name not in leaving]
        target.detach(node)
        members = patroni.cluster(target)
        led = any(m.name == node and m.role == "leader" for m in members)
        if led:
            to = _candidate([m for m in members if m.name in staying])
            patroni.post(target, node, "/switchover", {"leader": node, "candidate": to.name}, deployed.secrets["rest_api"])
            wait_until(f"{to.name} leading after the switchover away from {node}", lambda: patroni.cluster(target),
                       lambda ms: any(m.name == to.name and m.role == "leader" and m.state == "running" for m in ms),
                       timeout=deployed.budgets.rejoin_s)
        deployed.ssh(node, ["sudo", "systemctl", "disable", "--now", "patroni"])
        ids = {m.get("name"): m["ID"] for m in deployed.etcdctl(staying[0], "member", "list")["members"]}
        if node in ids:
            deployed.etcdctl(staying[0], "member", "remove", format(ids[node], "x"), parse=False)
        deployed.ssh(node, ["sudo", "systemctl", "disable", "--now", "etcd"])
        said.append(f"Retired {node}: out of the load balancer's pool, its Patroni stopped"
                    + (" after a switchover" if led else "") + ", its etcd member removed from the cluster.")
        log.info("%s", said[-1])
    return said
