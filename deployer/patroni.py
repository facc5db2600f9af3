"""Reading the cluster as Patroni reports it (REST API, ``GET /cluster``)."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import requests

from deployer.inventory import role_defaults
from deployer.targets.base import Target, TargetError


@dataclasses.dataclass(frozen=True)
class Member:
    """One cluster member as Patroni reports it; ``role`` is ``leader`` or ``replica``; ``sync``:
    the replica is the synchronous standby."""

    name: str
    address: str
    role: str
    state: str
    lag_bytes: int | None
    timeline: int | None
    sync: bool = False
    #: Patroni reports a setting changed that takes effect only at PostgreSQL's next start.
    pending_restart: bool = False


def cluster_view(target: Target, timeout: float = 3.0) -> dict:
    """``GET /cluster`` as Patroni answers it, asking each node in turn until one answers (any member
    knows the whole cluster); ConnectionError naming every node's failure otherwise."""
    errors = []
    for node in target.spec.nodes:
        try:
            resp = requests.get(f"{target.patroni_url(node.name)}/cluster", verify=target.ca_file, timeout=timeout)
            resp.raise_for_status()
        except requests.RequestException as exc:
            errors.append(f"{node.name}: {exc}")
            continue
        return resp.json()
    raise ConnectionError("no Patroni REST API answered: " + "; ".join(errors))


def cluster(target: Target, timeout: float = 3.0) -> list[Member]:
    """The members (``cluster_view``)."""
    return [_member(m) for m in cluster_view(target, timeout).get("members", [])]


def _member(m: dict) -> Member:
    leader = m["role"] in ("leader", "standby_leader")
    lag = 0 if leader else (m.get("lag") if isinstance(m.get("lag"), int) else None)  # "unknown" -> None
    return Member(name=m["name"], address=m.get("host", ""), role="leader" if leader else "replica",
                  state=m["state"], lag_bytes=lag, timeline=m.get("timeline"),
                  sync=m["role"] == "sync_standby", pending_restart=bool(m.get("pending_restart")))


def healthy(members: list[Member], nodes: int) -> bool:
    """One running leader and every other node a streaming replica with zero lag."""
    leaders = [m for m in members if m.role == "leader" and m.state == "running"]
    replicas = [m for m in members if m.role == "replica" and m.state == "streaming" and m.lag_bytes == 0]
    return len(members) == nodes and len(leaders) == 1 and len(replicas) == nodes - 1


def get(target: Target, node: str, path: str, timeout: float = 3.0) -> dict:
    """One node's answer to ``GET <path>`` of its REST API (``/config``, ``/patroni``...), as JSON."""
    resp = requests.get(f"{target.patroni_url(node)}{path}", verify=target.ca_file, timeout=timeout)
    resp.raise_for_status()
    return resp.json()


def post(target: Target, node: str, path: str, body: dict, password: str, timeout: float = 120) -> str:
    """An authenticated unsafe call (``POST /switchover``, ``/restart``) to one node's REST API; its
    answer's text. TargetError naming the node, the call and Patroni's answer unless 200."""
    user = role_defaults()["patroni"]["patroni_restapi_username"]
    resp = requests.post(f"{target.patroni_url(node)}{path}", json=body, auth=(user, password), verify=target.ca_file, timeout=timeout)
    if resp.status_code != 200:
        raise TargetError(f"{node}'s Patroni refused POST {path} {body}: {resp.status_code} {resp.text.strip()}")
    return resp.text.strip()


def statuses(target: Target, timeout: float = 3.0) -> dict[str, dict | None]:
    """Every node's own ``GET /patroni``, asked in parallel; ``None`` for a node that does not answer."""
    def ask(node: str) -> dict | None:
        try:
            return get(target, node, "/patroni", timeout)
        except requests.RequestException:
            return None
    names = [n.name for n in target.spec.nodes]
    with ThreadPoolExecutor(len(names)) as pool:
        return dict(zip(names, pool.map(ask, names)))
