"""Fakes of the Azure contract tests (imported by ``conftest.py`` and the tests beside it).

The Azure SDK's HTTP calls are answered by ``responses`` (azure-core's default transport is
``requests``), with payloads from ``fixtures/`` shaped like the public ARM examples; the token comes
from a fake ``TokenCredential``; the Bicep compiler returns a precompiled template. Every
registered answer must be used (``assert_all_requests_are_fired``), and an unregistered request
fails, so a test states exactly the calls the target makes.
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import time
from pathlib import Path

import responses
from azure.core.credentials import AccessToken
from azure.identity import CredentialUnavailableError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ARM = "https://management.azure.com"
SUB = "00000000-0000-0000-0000-0000000000aa"
RG = "rg-pgha"
GROUP = f"/resourceGroups/{RG}"
NET = f"{GROUP}/providers/Microsoft.Network"
CMP = f"{GROUP}/providers/Microsoft.Compute"
DEPLOYMENT = f"{GROUP}/providers/Microsoft.Resources/deployments/pgha-main"
#: The backup repository's storage account, as ``deployment_succeeded.json`` names it.
ACCOUNT = f"{GROUP}/providers/Microsoft.Storage/storageAccounts/pgbackrest5f3tcbt2lzcbk"
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
ADMIN_CIDR = "192.0.2.7/32"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class FakeCredential:
    """A TokenCredential that hands out a fake token and counts the requests for one."""

    def __init__(self):
        self.calls = 0

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        self.calls += 1
        return AccessToken("fake-token", int(time.time()) + 3600)


class NoCredential:
    """What DefaultAzureCredential does on a machine with no sign-in at all."""

    def get_token(self, *scopes, **kwargs):
        raise CredentialUnavailableError("DefaultAzureCredential failed to retrieve a token from the included credentials.")


class Arm:
    """The fake Azure Resource Manager: answers by method and path below ``/subscriptions/<SUB>``."""

    def __init__(self, rsps: responses.RequestsMock):
        self.rsps = rsps
        self._ops = 0

    @staticmethod
    def url(path: str) -> re.Pattern:
        return re.compile(re.escape(f"{ARM}/subscriptions/{SUB}{path}") + r"(\?.*)?$", re.IGNORECASE)

    def add(self, method: str, path: str, body: dict | None = None, status: int = 200, headers: dict | None = None):
        self.rsps.add(method, self.url(path), json=body, status=status, headers=headers)

    def together(self, method: str, paths: list[str], bodies: list[dict], timeout: float = 10):
        """Answer each path only once every one of them was asked (a barrier): requests sent one
        after the other never get their answers (BrokenBarrierError, the request fails)."""
        barrier = threading.Barrier(len(paths), timeout=timeout)

        def answer(body):
            def callback(request):
                barrier.wait()
                return 200, {"Content-Type": "application/json"}, json.dumps(body)
            return callback

        for path, body in zip(paths, bodies):
            self.rsps.add_callback(method, self.url(path), callback=answer(body))

    def error(self, method: str, path: str, status: int, code: str, message: str):
        self.add(method, path, {"error": {"code": code, "message": message}}, status=status)

    def lro(self, method: str, path: str, final: dict | None = None, status: int = 200, header: str = "Location"):
        """A long-running operation: 202 with a Location (``header``: the health example spells it
        ``location``), then the operation result on that Location."""
        self._ops += 1
        operation = f"/providers/Microsoft.Network/locations/westeurope/operationResults/op{self._ops}"
        self.add(method, path, status=202,
                 headers={header: f"{ARM}/subscriptions/{SUB}{operation}?api-version=2024-05-01"})
        self.add("GET", operation, final, status=status)

    def async_op(self, method: str, path: str, status_body: dict, accepted: dict | None = None,
                 final: dict | None = None):
        """An operation answered 201 (PUT) or 202 + Azure-AsyncOperation, its status polled, then, for a
        PUT that succeeded, the resource read."""
        self._ops += 1
        operation = f"/providers/Microsoft.Resources/operationStatuses/op{self._ops}"
        self.add(method, path, accepted, status=201 if method == "PUT" else 202,
                 headers={"Azure-AsyncOperation": f"{ARM}/subscriptions/{SUB}{operation}"})
        self.add("GET", operation, status_body)
        if final is not None:
            self.add("GET", path, final)

    def sent(self, method: str | None = None, contains: str = "") -> list[tuple[str, str, dict | None]]:
        """The requests sent, as (method, url, JSON body), filtered by method and a URL part."""
        out = []
        for call in self.rsps.calls:
            req = call.request
            if (method is None or req.method == method) and contains.lower() in req.url.lower():
                body = req.body
                out.append((req.method, req.url, json.loads(body) if body else None))
        return out


def answer_pool(arm: Arm, replicas: str = "lb_health_replicas.json"):
    """The backend pool after attach and the health of its two rules, each as the REST example
    answers it: 202 with a lowercase ``location``, then the report (by default pg3 is Down on the
    replicas rule; ``replicas="lb_health_primary.json"``: every node Up on both)."""
    lb = f"{NET}/loadBalancers/pgha-lb"
    arm.add("GET", f"{lb}/backendAddressPools/nodes", load("backend_pool.json"))
    arm.lro("POST", f"{lb}/loadBalancingRules/haproxy-primary/health", load("lb_health_primary.json"), header="location")
    arm.lro("POST", f"{lb}/loadBalancingRules/haproxy-replicas/health", load(replicas), header="location")


def answer_redeploy(arm: Arm, vms: dict | None = None):
    """A provision into our existing group, up to the deployment: the group read and updated, its
    VMs listed (``vms_in_group.json`` unless given: those of the spec's nodes, so none is deleted),
    the what-if answered (no change but the pool membership)."""
    arm.add("GET", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("PUT", "/resourcegroups/rg-pgha", load("resource_group.json"))
    arm.add("GET", f"{CMP}/virtualMachines", vms or load("vms_in_group.json"))
    arm.lro("POST", f"{DEPLOYMENT}/whatIf", load("what_if_attach.json"))


def answer_keys(arm: Arm):
    """The backup account's keys, as ``StorageAccounts_ListKeys`` answers them (``storage_account_keys.json``)."""
    arm.add("POST", f"{ACCOUNT}/listKeys", load("storage_account_keys.json"))


def answer_prerequisites(arm: Arm, feature: str = "Registered", skus: dict | None = None):
    """The subscription's encryption-at-host feature (in ``feature`` state) and the VM sizes of the
    region (``resource_skus.json`` unless given), as preflight reads them."""
    arm.add("GET", "/providers/Microsoft.Features/providers/Microsoft.Compute/features/EncryptionAtHost",
            load("feature_encryption_at_host.json") | {"properties": {"state": feature}})
    arm.add("GET", "/providers/Microsoft.Compute/skus", skus or load("resource_skus.json"))


#: What the fake Bicep CLI prints: ``az bicep build --stdout`` of ``bicep/main.bicep``.
BUILD_OUTPUT = FIXTURES / "bicep_build_main.json"
FAKE_CLI = """#!/bin/sh
# A Bicep CLI that knows one file: {main} (as `bicep build --stdout FILE` or `az bicep build --stdout --file FILE`).
case "$*" in
  "build --stdout {main}"|"bicep build --stdout --file {main}")
    echo "WARNING: linter warnings go to stderr, the template alone to stdout" >&2
    exec cat {output} ;;
  *) echo "Error BCP091: An error occurred reading file. Could not find file '$*'." >&2; exit 1 ;;
esac
"""


def fake_bicep_cli(bin_dir: Path, name: str, main: Path) -> Path:
    """Install the fake CLI as ``bin_dir/name`` (``bicep`` or ``az``); its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    cli = bin_dir / name
    cli.write_text(FAKE_CLI.format(main=main, output=BUILD_OUTPUT))
    cli.chmod(0o755)
    return cli
