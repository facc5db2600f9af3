"""How the control machine reaches a node over SSH: one ``HostAccess``, rendered for every SSH user.

Ansible, testinfra, process faults and the Azure tunnels all get their options from here, so they
check host keys the same way, use only the stack's key and give up after the same bounded waits.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

#: OpenSSH options every SSH user shares: strict host keys, our key only, bounded waits.
SSH_OPTIONS = {
    "IdentitiesOnly": "yes",
    "BatchMode": "yes",
    "StrictHostKeyChecking": "yes",
    "ConnectTimeout": "5",
    "ServerAliveInterval": "5",
    "ServerAliveCountMax": "3",
}


@dataclasses.dataclass(frozen=True)
class HostAccess:
    """SSH access to one node: its spec ``address`` and where SSH really connects (``ssh_host``,
    ``ssh_port``: the node itself locally, the load balancer's NAT port on Azure)."""

    node: str
    address: str
    ssh_host: str
    ssh_port: int
    user: str
    key_file: Path
    known_hosts: Path
    proxy_jump: str | None = None

    def _options(self) -> dict[str, str]:
        return {**SSH_OPTIONS, "UserKnownHostsFile": str(self.known_hosts)}

    def ssh_options(self) -> list[str]:
        """``-o K=V`` options (and ``-J``), without key and port: what Ansible's ssh_common_args takes."""
        args = [a for k, v in self._options().items() for a in ("-o", f"{k}={v}")]
        return args + (["-J", self.proxy_jump] if self.proxy_jump else [])

    def ssh_args(self) -> list[str]:
        """Every OpenSSH option for this host, key and port included."""
        return ["-i", str(self.key_file), "-p", str(self.ssh_port), *self.ssh_options()]

    def ssh_argv(self, remote: str | list[str], *extra: str) -> list[str]:
        """``ssh ... user@host -- remote``: a list is quoted for the remote shell with ``shlex``."""
        command = remote if isinstance(remote, str) else shlex.join(remote)
        return ["ssh", *self.ssh_args(), *extra, f"{self.user}@{self.ssh_host}", "--", command]

    def ssh_config(self) -> str:
        """An ssh_config ``Host`` block naming the node (for testinfra's ``ssh_config=``)."""
        lines = [f"Host {self.node}", f"  HostName {self.ssh_host}", f"  Port {self.ssh_port}", f"  User {self.user}",
                 f"  IdentityFile {self.key_file}", *(f"  {k} {v}" for k, v in self._options().items())]
        if self.proxy_jump:
            lines.append(f"  ProxyJump {self.proxy_jump}")
        return "\n".join(lines) + "\n"

    def ansible_vars(self) -> dict[str, str | int]:
        """The connection variables of this host in an Ansible inventory."""
        return {"ansible_host": self.ssh_host, "ansible_port": self.ssh_port, "ansible_user": self.user,
                "ansible_ssh_private_key_file": str(self.key_file),
                "ansible_ssh_common_args": shlex.join(self.ssh_options())}
