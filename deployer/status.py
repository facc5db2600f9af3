"""``deployer status``: stages, each node's Patroni role and lag, and the load balancer's members.

The JSON form is a stable interface for scripts:
``{"name", "target", "stages": {stage: {"ok", "seconds"}}, "nodes": [{"name", "address", "role",
"state", "lag_bytes", "timeline", "pending_restart"}], "load_balancer": {"frontend": "ADDRESS:PORT",
"members": [{"node", "healthy"}]}}``. A node Patroni does not report has role None and state
"unreachable"; ``pending_restart`` (bool, None when unreachable): Patroni reports a setting that
PostgreSQL applies only at its next start.
"""

from __future__ import annotations

from deployer import patroni
from deployer.state import StackState
from deployer.targets import Target


def collect(state: StackState, target: Target) -> dict:
    """Everything ``status`` shows, read live from Patroni and the load balancer."""
    errors = []
    try:
        members = {m.name: m for m in patroni.cluster(target)}
    except ConnectionError as exc:
        members, errors = {}, [str(exc)]
    nodes = []
    for node in target.spec.nodes:
        m = members.get(node.name)
        nodes.append({"name": node.name, "address": str(node.address),
                      "role": m.role if m else None, "state": m.state if m else "unreachable",
                      "lag_bytes": m.lag_bytes if m else None, "timeline": m.timeline if m else None,
                      "pending_restart": m.pending_restart if m else None})
    try:
        pool = [{"node": p.node, "healthy": p.healthy, "address": p.address} for p in target.backend_pool()]
    except Exception as exc:  # noqa: BLE001 - status reports what it can
        pool, errors = [], errors + [f"load balancer: {exc}"]
    address, port = target.frontend()
    return {"name": state.name, "target": state.target, "stages": state.summary(),
            "stage_errors": {s: r.error for s, r in state.stages.items() if r.error},
            "nodes": nodes, "load_balancer": {"frontend": f"{address}:{port}", "members": pool},
            "errors": errors}
