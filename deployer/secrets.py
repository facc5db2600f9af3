"""Generated secrets of one stack: created once, stored mode 0600, never printed or logged.

``Secrets`` has no ``__repr__`` of its values, so an accidental log line shows only the names.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

from deployer.state import write_private

NAMES = ("superuser", "replication", "rewind", "rest_api", "app")


class Secrets:
    """Passwords by role name, plus the stack's SSH key pair."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.file = directory / "secrets.json"
        self.ssh_key = directory / "id_ed25519"
        if not self.file.exists():
            write_private(self.file, json.dumps({n: secrets.token_urlsafe(24) for n in NAMES}))
        self._values = json.loads(self.file.read_text())
        if not self.ssh_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"pgha-{directory.name}",
                            "-f", str(self.ssh_key)], check=True)
            self.ssh_key.chmod(0o600)

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __repr__(self) -> str:
        return f"Secrets({', '.join(sorted(self._values))}: hidden)"

    @property
    def ssh_public_key(self) -> str:
        return self.ssh_key.with_suffix(".pub").read_text().strip()
