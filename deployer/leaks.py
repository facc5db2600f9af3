"""Secrets where they must never be: a scan of what runs leave for people to read (reports, log
bundles, the deployer's output) for the stack's generated passwords, the bodies of its private keys
(CA, nodes, SSH) and any PEM private key at all."""

from __future__ import annotations

import json
import re
from pathlib import Path

PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


def stack_secrets(state_dir: Path) -> dict[str, bytes]:
    """What a leak of this stack would contain, by name: each generated password
    (``secrets.json``), the backup repository's key (``storage/account.json``) and the first line of each private key's body (``id_ed25519``, ``tls/**.key``)."""
    found = {f"the {name} password": value.encode()
             for name, value in json.loads((state_dir / "secrets.json").read_text()).items()}
    account = state_dir / "storage" / "account.json"  # the backup repository's key, on every target
    if account.exists():
        found["the backup repository's key"] = json.loads(account.read_text())["key"].encode()
    for key in [state_dir / "id_ed25519", *sorted((state_dir / "tls").rglob("*.key"))]:
        body = [line for line in key.read_bytes().splitlines() if line.strip() and not line.startswith(b"-----")]
        if body:
            found[f"the private key {key.relative_to(state_dir)}"] = body[0].strip()
    return found


def leaks_in(data: bytes, secrets: dict[str, bytes]) -> list[str]:
    """The names of the secrets ``data`` holds, and "a PEM private key" when it holds one."""
    return [name for name, value in secrets.items() if value in data] + (
        ["a PEM private key"] if PEM_PRIVATE_KEY.search(data) else [])


def leaks_under(root: Path, secrets: dict[str, bytes]) -> list[str]:
    """Every file under ``root`` that holds a secret: ``"<path>: <what>"``, in path order."""
    return [f"{path.relative_to(root)}: {', '.join(what)}"
            for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
            if (what := leaks_in(path.read_bytes(), secrets))]
