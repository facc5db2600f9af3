"""An authenticated request to the backup repository's container, as a client at some vantage
would make it (``python -m deployer.blob_probe URL ACCOUNT CONTAINER CA``, the account key on stdin):
it prints ``{"reachable": bool, "seconds": float, "detail": str}``. Reachable means the service
answered the request with the container's properties; refused, timed out, or answered with an
error (the storage account's network rules answer 403 on Azure) means not.
"""

from __future__ import annotations

import json
import sys
import time


def probe(url: str, account: str, container: str, key: str, ca: str | bool, timeout: float = 3.0) -> dict:
    """Get the container's properties with the account's key; see the module docstring."""
    from azure.storage.blob import ContainerClient

    client = ContainerClient(url, container, credential={"account_name": account, "account_key": key},
                             connection_verify=ca, connection_timeout=timeout, read_timeout=timeout, retry_total=0)
    started = time.monotonic()
    try:
        props = client.get_container_properties()
        return {"reachable": True, "seconds": time.monotonic() - started, "detail": f"container {props.name} answered"}
    except Exception as exc:  # every failure is the answer; its class and message say which
        return {"reachable": False, "seconds": time.monotonic() - started,
                "detail": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}


if __name__ == "__main__":
    url, account, container, ca = sys.argv[1:5]
    print(json.dumps(probe(url, account, container, sys.stdin.readline().strip(), ca or True)))
