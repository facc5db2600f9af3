"""The load balancer: HAProxy in TCP mode in the ``lb`` namespace, standing in for Azure's Standard LB.

One frontend on the public address with the spec's client ports, one backend pool ``nodes`` that
starts EMPTY. Servers carry no port, so a connection to frontend port P goes to port P of the node,
like an Azure LB rule with floating ports off. The pool's health probe is an HTTP check of the
node's HAProxy health endpoint, with the spec's interval and threshold (Azure's probe semantics:
established flows stay on a probed-down member). Members are added and removed at run time through
the admin socket (``add server`` / ``del server``), never by rewriting the config. With
``no_healthy_backends: AllProbedUp`` every member is also in ``nodes_all``, unchecked, which the
frontend uses only while no member of ``nodes`` is up (Azure's "sent to all instances").

The binary is the VM image's own haproxy, run through the image's dynamic loader, so the host needs
no haproxy package (whose postinst would start one in the root namespace).
"""

from __future__ import annotations

import socket
from pathlib import Path

from deployer import haproxy_stat
from deployer.spec import StackSpec
from deployer.targets.base import PoolMember, TargetError
from deployer.targets.local.cmd import run

BACKEND = "nodes"
#: Every member, unchecked: where new connections go while the whole pool is probed down (AllProbedUp).
ALL_BACKEND = "nodes_all"


def _backends(spec: StackSpec) -> tuple[str, ...]:
    return (BACKEND, ALL_BACKEND) if spec.load_balancer.no_healthy_backends == "AllProbedUp" else (BACKEND,)


def _checked(spec: StackSpec) -> str:
    """A pool member's probe: the node's HAProxy health port, the spec's interval and threshold."""
    lb = spec.load_balancer
    return f"check port {spec.ports.haproxy_health} inter {lb.probe_interval_s}s fall {lb.probe_threshold} rise 1"


def render_config(spec: StackSpec, frontend: str, rundir: Path, members: dict[str, str] | None = None) -> str:
    """haproxy.cfg for the load balancer: an empty backend pool, or ``members`` (name -> address)
    as the pool a reload must keep (a reload forgets the servers added at run time)."""
    members = members or {}
    pool = "".join(f"\n    server {name} {address} {_checked(spec)}" for name, address in members.items())
    pool_all = "".join(f"\n    server {name} {address}" for name, address in members.items())
    binds = "\n".join(f"    bind {frontend}:{port}" for port in (spec.ports.haproxy_primary, spec.ports.haproxy_replicas))
    all_probed_up = f"""
    use_backend {ALL_BACKEND} if {{ nbsrv({BACKEND}) eq 0 }}""" if ALL_BACKEND in _backends(spec) else ""
    all_backend = f"""
backend {ALL_BACKEND}
    balance roundrobin
    # The same members, unchecked: used only while every member of {BACKEND} is probed down.{pool_all}
""" if all_probed_up else ""
    return f"""global
    stats socket {rundir}/admin.sock mode 600 level admin
    pidfile {rundir}/haproxy.pid
    maxconn 4000

defaults
    mode tcp
    timeout connect 3s
    timeout client 1h
    timeout server 1h
    timeout check 2s

frontend public
{binds}{all_probed_up}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET /health
    # Members are added at stage 3 through the admin socket.{pool}
{all_backend}"""


def command(image: Path, config: Path, replacing: list[str] = ()) -> list[str]:
    """argv running the image's haproxy as a daemon through the image's loader; with ``replacing``
    (the running pids) a seamless reload: the new process binds, then the old ones stop listening
    and finish their established connections (``-sf``)."""
    libs = ":".join(str(image / d) for d in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"))
    return [str(image / "lib64/ld-linux-x86-64.so.2"), "--library-path", libs,
            str(image / "usr/sbin/haproxy"), "-D", "-f", str(config), *(["-sf", *replacing] if replacing else [])]


def running_pids(rundir: Path) -> list[str]:
    """The pids the pidfile names that are alive (none: the load balancer is not running)."""
    pidfile = rundir / "haproxy.pid"
    pids = pidfile.read_text().split() if pidfile.exists() else []
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def admin(rundir: Path, cmd: str, timeout: float = 5.0) -> str:
    """Send one command to the admin socket and return its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(rundir / "admin.sock"))
        except OSError as exc:
            raise TargetError(f"the load balancer's admin socket {rundir}/admin.sock does not answer: {exc}") from exc
        sock.sendall(cmd.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def add_member(spec: StackSpec, rundir: Path, name: str, address: str) -> None:
    """Add a node to the pool with the probe settings on the line (dynamic servers ignore default-server)."""
    answer = admin(rundir, f"add server {BACKEND}/{name} {address} {_checked(spec)}")
    if "New server registered" not in answer and "Already exists" not in answer:
        raise TargetError(f"the load balancer refused to add {name} ({address}): {answer.strip()}")
    # A new server leaves maintenance UP; mark it down at once so it serves only once a probe passed.
    cmds = [f"enable health {BACKEND}/{name}", f"enable server {BACKEND}/{name}", f"set server {BACKEND}/{name} health down"]
    if ALL_BACKEND in _backends(spec):
        answer = admin(rundir, f"add server {ALL_BACKEND}/{name} {address}")
        if "New server registered" not in answer and "Already exists" not in answer:
            raise TargetError(f"the load balancer refused to add {name} ({address}) to {ALL_BACKEND}: {answer.strip()}")
        cmds.append(f"enable server {ALL_BACKEND}/{name}")
    for cmd in cmds:
        answer = admin(rundir, cmd)
        if answer.strip():
            raise TargetError(f"`{cmd}` on the load balancer said: {answer.strip()}")


def remove_member(spec: StackSpec, rundir: Path, name: str) -> None:
    """Drain and delete a node from the pool; a no-op when it is not there."""
    for backend in _backends(spec):
        admin(rundir, f"disable server {backend}/{name}")
        admin(rundir, f"shutdown sessions server {backend}/{name}")
        admin(rundir, f"del server {backend}/{name}")


def members(spec: StackSpec, rundir: Path) -> list[PoolMember]:
    """The pool as HAProxy reports it (``show stat``): member, address, probe status."""
    by_name = haproxy_stat.servers(admin(rundir, "show stat")).get(BACKEND, {})
    order = [n.name for n in spec.nodes] + sorted(set(by_name) - {n.name for n in spec.nodes})
    return [PoolMember(node=name, address=by_name[name]["addr"].split(":")[0], healthy=haproxy_stat.is_up(by_name[name]))
            for name in order if name in by_name]


def connections(spec: StackSpec, rundir: Path) -> dict[str, int]:
    """``{member: stot}`` of the pool as HAProxy reports it (``show stat``): the sessions it has sent
    to each member since it was added (in TCP mode, one per client connection), through either backend."""
    stat, counts = haproxy_stat.servers(admin(rundir, "show stat")), {}
    for backend in _backends(spec):
        for name, row in stat.get(backend, {}).items():
            counts[name] = counts.get(name, 0) + int(row["stot"] or 0)
    return counts


def stop(rundir: Path) -> None:
    """Stop the load balancer's haproxy if its pidfile names a live process."""
    pidfile = rundir / "haproxy.pid"
    if pidfile.exists():
        for pid in pidfile.read_text().split():
            run(["kill", pid], check=False)
        pidfile.unlink()
