"""The backup repository's storage account (``bicep/modules/storage.bicep``) as the nodes reach it.

The account's shared key is read from ARM (``StorageAccounts_ListKeys``: ``key1``) and kept with the
stack's other secrets, mode 0600, in ``<state dir>/storage/account.json`` (``{"account", "key"}``,
where the local target keeps its emulator's); it is never printed, logged or put in an error.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from deployer.state import write_private
from deployer.targets.azure.clients import Clients, rest
from deployer.targets.azure.errors import azure_errors
from deployer.targets.base import BackupRepository, TargetError

#: Where the key lives, below the stack's state directory.
KEY_FILE = Path("storage") / "account.json"
#: The blob endpoint's HTTPS port.
PORT = 443


def endpoint(outputs: dict) -> tuple[str, str]:
    """(account, blob host) from the deployment's outputs; TargetError when they have none (the stack
    was provisioned before the repository existed, or with ``backup.enabled: false``)."""
    account, host = outputs.get("backupAccountName"), outputs.get("backupBlobHost")
    if not account or not host:
        raise TargetError("the deployment outputs name no backup storage account (provisioned before the backup "
                          "repository, or with backup.enabled false): run `deployer up --force provision` to deploy it")
    return account, host


def fetch_key(az: Clients, rg: str, account: str, state_dir: Path) -> str:
    """Read the account's ``key1`` from ARM and store it (mode 0600) in the state directory; the key."""
    with azure_errors("list the keys of", f"storage account {account}"):
        keys = rest(az.storage.storage_accounts.list_keys(rg, account)).get("keys") or []
    key = next((k.get("value") for k in keys if k.get("keyName") == "key1"), None)
    if not key:
        raise TargetError(f"storage account {account} lists no key1 (ListKeys named "
                          f"{[k.get('keyName') for k in keys]}): pgBackRest needs its shared key")
    write_private(state_dir / KEY_FILE, json.dumps({"account": account, "key": key}))
    return key


def stored_key(state_dir: Path, account: str) -> str | None:
    """The key stored for ``account``, or None when none is (or one of another account is)."""
    path = state_dir / KEY_FILE
    stored = json.loads(path.read_text()) if path.exists() else {}
    return stored.get("key") if stored.get("account") == account else None


def repository(outputs: dict, container: str, key: str) -> BackupRepository:
    """The repository in the account the outputs name: its blob endpoint over HTTPS on 443, host-style
    URLs (``<account>.blob.core.windows.net``), verified against the system's CA store, found by DNS."""
    account, host = endpoint(outputs)
    return BackupRepository(host=host, port=PORT, uri_style="host", account=account, container=container, key=key)


def _write_subnets(az: Clients, rg: str, account: str, acls: dict, subnets: list[dict], what: str) -> None:
    with azure_errors(what, f"storage account {account}"):
        az.storage.storage_accounts.update(rg, account, {"properties": {"networkAcls": {**acls,
                                                                                        "virtualNetworkRules": subnets}}})


@contextlib.contextmanager
def subnet_admitted(az: Clients, rg: str, account: str, subnet_id: str) -> Iterator[None]:
    """The account's network rules admit the subnet ``subnet_id`` (of another stack's virtual
    network, whose storage service endpoint routes to the account) during the block: one virtual
    network rule added to what ``StorageAccounts_GetProperties`` reports, the rules as read written
    back on exit, also on error. A subnet admitted already is left as it is. Azure applies a new rule
    within minutes: the reader waits until the repository answers."""
    with azure_errors("read the network rules of", f"storage account {account}"):
        acls = rest(az.storage.storage_accounts.get_properties(rg, account)).get("properties", {}).get("networkAcls") or {}
    subnets = [{"id": r["id"], "action": r.get("action", "Allow")} for r in acls.get("virtualNetworkRules") or []]
    if any(r["id"].lower() == subnet_id.lower() for r in subnets):
        yield
        return
    _write_subnets(az, rg, account, acls, [*subnets, {"id": subnet_id, "action": "Allow"}], "admit another subnet to")
    try:
        yield
    finally:
        _write_subnets(az, rg, account, acls, subnets, "withdraw another subnet's admission from")
