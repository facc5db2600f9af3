"""Reaching the nodes over SSH: their ``HostAccess``, host keys trusted on first use, probes from a
node, and tunnels to the nodes' Patroni APIs.

The VMs have no public address: SSH reaches each through its inbound NAT port on the load
balancer's frontend (deployment outputs), and every command line comes from ``HostAccess``.
"""

from __future__ import annotations

import logging
import math
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from deployer.netprobe import tcp
from deployer.spec import StackSpec
from deployer.state import write_private
from deployer.targets.base import HostAccess, TargetError
from deployer.wait import WaitTimeout, wait_until

log = logging.getLogger("deployer.azure")

#: A new VM's sshd may take this long to offer its host key through the NAT port.
HOST_KEY_DEADLINE_S = 600
#: A tunnel's local port answers within this, or the node is down.
TUNNEL_DEADLINE_S = 10
#: The SSH round trip a probe from a node may add to its own timeout.
SSH_SLACK_S = 30

Run = Callable[..., subprocess.CompletedProcess]


def hosts(spec: StackSpec, outputs: dict, key_file: Path, known_hosts: Path) -> list[HostAccess]:
    """One HostAccess per node, in spec order: ``ssh_host`` the frontend, ``ssh_port`` the node's
    NAT port, the user ``admin_user``, the stack's key and its ``known_hosts``."""
    by_name = {n["name"]: n for n in outputs["nodes"]}
    return [HostAccess(node=node.name, address=by_name[node.name]["privateIp"], ssh_host=outputs["frontendIp"],
                       ssh_port=int(by_name[node.name]["sshPort"]), user=spec.admin_user, key_file=key_file,
                       known_hosts=known_hosts)
            for node in spec.nodes]


def keyscan(run: Run, host: str, port: int) -> str:
    """The host key lines ``ssh-keyscan`` gets from ``host:port``; empty while sshd does not answer."""
    done = run(["ssh-keyscan", "-T", "5", "-p", str(port), host], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


def trust_host_keys(found: list[HostAccess], scan: Callable[[str, int], str], known_hosts: Path) -> None:
    """Trust on first use: write each node's host key, as its sshd offers it through the NAT port,
    to ``known_hosts`` (mode 0600), polling until it answers (the VM may still boot)."""
    lines = []
    for host in found:
        try:
            lines.append(wait_until(
                f"{host.node}'s SSH host key from {host.ssh_host}:{host.ssh_port} (if never: is "
                "azure.admin_cidr this machine's address?)",
                lambda h=host: scan(h.ssh_host, h.ssh_port).strip(), timeout=HOST_KEY_DEADLINE_S, interval=5))
        except WaitTimeout as exc:
            raise TargetError(str(exc)) from None
    write_private(known_hosts, "\n".join(lines) + "\n")


def probe_from(host: HostAccess, address: str, port: int, timeout: float, run: Run) -> dict:
    """``nc -z -w`` on the node over SSH, as ``netprobe.tcp`` answers (``seconds`` includes the SSH
    round trip). TargetError when SSH itself fails or the node has no ``nc``."""
    argv = host.ssh_argv(["nc", "-z", "-w", str(max(1, math.ceil(timeout))), address, str(port)])
    start = time.perf_counter()
    try:
        done = run(argv, capture_output=True, text=True, timeout=timeout + SSH_SLACK_S, check=False)
    except subprocess.TimeoutExpired:
        raise TargetError(f"probe from {host.node}: SSH did not return in {timeout + SSH_SLACK_S:.0f} s") from None
    seconds = time.perf_counter() - start
    if done.returncode == 255:
        raise TargetError(f"probe from {host.node}: SSH to {host.node} ({host.ssh_host}:{host.ssh_port}) failed: "
                          f"{done.stderr.strip()[-300:]}")
    if done.returncode == 127:
        raise TargetError(f"probe from {host.node}: `nc` is not installed on {host.node}")
    detail = "connected" if done.returncode == 0 else (done.stderr.strip() or "refused or timed out")
    return {"reachable": done.returncode == 0, "seconds": seconds, "detail": f"via {host.node}: {detail}"}


class Tunnels:
    """Local forwards ``127.0.0.1:<free port> -> <node address>:<port>`` through each node's SSH,
    one per node, started on first use and restarted when dead; ``close`` ends them (only them)."""

    def __init__(self, popen: Callable[..., subprocess.Popen]):
        self._popen = popen
        self.open: dict[str, tuple[subprocess.Popen, int]] = {}

    def url(self, host: HostAccess, port: int) -> str:
        """``https://127.0.0.1:<local port>`` forwarded to the node's ``port`` (Patroni's API over TLS:
        every node certificate names 127.0.0.1, so the name verifies through the tunnel). When the
        tunnel cannot open (node down), the local port is closed, so a request fails fast rather than hangs."""
        tunnel = self.open.get(host.node)
        if tunnel is None or tunnel[0].poll() is not None:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                local = sock.getsockname()[1]
            proc = self._popen(["ssh", *host.ssh_args(), "-N", "-o", "ExitOnForwardFailure=yes",
                                "-L", f"127.0.0.1:{local}:{host.address}:{port}", f"{host.user}@{host.ssh_host}"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.open[host.node] = tunnel = (proc, local)
            try:
                wait_until(f"the SSH tunnel to {host.node}:{port} on 127.0.0.1:{local}",
                           lambda: proc.poll() is not None or tcp("127.0.0.1", local, 1)["reachable"],
                           timeout=TUNNEL_DEADLINE_S, interval=0.2)
            except WaitTimeout as exc:
                log.warning("%s", exc)
        return f"https://127.0.0.1:{tunnel[1]}"

    def close(self) -> None:
        for proc, _ in self.open.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.open.clear()
