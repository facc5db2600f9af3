"""The backup repository's endpoint on the local target: Azurite (Microsoft's Azure Storage emulator,
the npm package ``azurite``) in the ``storage`` namespace, standing for a storage account's blob
endpoint.

- **TLS**: it serves HTTPS on 443 with a certificate of the stack's CA (``StackPKI.service``) naming
  ``HOST`` and its address; the nodes find ``HOST`` in their ``/etc/hosts`` (``BackupRepository.address``).
- **Credential**: one account, ``ACCOUNT``, whose shared key the deployer generates once and keeps
  mode 0600 in ``<state dir>/storage/account.json``; Azurite reads it from its environment, never
  from its command line.
- **Network rules**: a firewall in the namespace (``inet pgha_storage``, standing for the account's
  ``networkAcls``: default deny) admits the cluster's subnet and the management link (the deployer
  creates the container there, as Azure's control plane does); the internet vantage and the
  neighbour are dropped.
- **Another stack's node** (``restore --into``) reaches it through ``forwarded_to``: an SSH reverse
  forward from that node's loopback through the control machine, which the network rules admit as
  management (the namespaces of two stacks are not routed to each other).
- **Lifecycle**: ``converge`` starts it (or restarts it when its certificate changed, as a rotation
  does), waits for it and creates the container; ``stop`` ends it. Its data lives in
  ``<state dir>/storage/data``, removed with the stack (as a resource group takes its storage account).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from deployer.netprobe import tcp
from deployer.pki import StackPKI
from deployer.state import write_private
from deployer.targets.access import HostAccess
from deployer.targets.base import BackupRepository, MissingPrerequisite, TargetError
from deployer.targets.local.cmd import run
from deployer.targets.local.network import Layout
from deployer.wait import WaitTimeout, wait_until

#: Where ``make azurite`` installs the emulator (outside the checkout, shared by every stack).
AZURITE_DIR = Path(os.environ.get("PGHA_AZURITE_DIR", "/var/cache/pgha/azurite"))
#: The release installed: the last one that runs on Node.js 20 (later ones need 22).
AZURITE_VERSION = "3.35.0"
MAIN = AZURITE_DIR / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
ACCOUNT, PORT, SERVICE = "pgharepo", 443, "blob"
#: Where the nodes' CA bundle is (the common role installs it; ``inventory.TLS_ON_NODE``).
NODE_CA_FILE = "/etc/pgha/tls/ca.crt"
FIREWALL = "pgha_storage"
#: On another stack's node during ``forwarded_to``: the loopback port forwarded here, this stack's CA,
#: and the comment ending the /etc/hosts line naming the endpoint there.
FORWARD_PORT, FORWARD_CA, FORWARD_MARK = 10443, "/etc/pgbackrest-source-ca.crt", "# pgha: restore source"


def host(stack: str) -> str:
    """The blob endpoint's name, as the nodes and its certificate know it."""
    return f"blob.{stack}.internal"


def missing() -> list[str]:
    """What this machine lacks to run the emulator (empty: nothing)."""
    problems = [] if shutil.which("node") else ["install Node.js (the Debian package nodejs; `make deps` does)"]
    package = AZURITE_DIR / "node_modules" / "azurite" / "package.json"
    version = json.loads(package.read_text()).get("version") if package.exists() else None
    if version != AZURITE_VERSION:
        problems.append(f"install Azurite {AZURITE_VERSION} into {AZURITE_DIR} (`make azurite` does; found {version})")
    return problems


def install() -> None:
    """``npm install`` the pinned release into ``AZURITE_DIR`` (a no-op when it is there)."""
    if not any("Azurite" in p for p in missing()):
        return
    AZURITE_DIR.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(AZURITE_DIR),
                           f"azurite@{AZURITE_VERSION}"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise MissingPrerequisite(f"npm could not install azurite@{AZURITE_VERSION}: {proc.stderr.strip()[-500:]}")


class Storage:
    """One stack's emulated storage account: its files under ``rundir``, its namespace in ``layout``."""

    def __init__(self, layout: Layout, rundir: Path, pki: StackPKI, container: str):
        self.layout, self.rundir, self.pki, self.container = layout, rundir, pki, container
        self.address = str(layout.storage_link.outer)
        self.host = host(layout.stack)
        self.account_file, self.pidfile = rundir / "account.json", rundir / "azurite.pid"
        self.served_cert = rundir / "served.crt"

    def key(self) -> str:
        """The account's shared key, generated once (64 random bytes, base64, as Azure's are)."""
        if not self.account_file.exists():
            write_private(self.account_file, json.dumps(
                {"account": ACCOUNT, "key": base64.b64encode(secrets.token_bytes(64)).decode()}))
        return json.loads(self.account_file.read_text())["key"]

    def repository(self) -> BackupRepository:
        """The repository as the nodes reach it (path style: Azurite names the account in the path)."""
        return BackupRepository(host=self.host, port=PORT, uri_style="path", account=ACCOUNT,
                                container=self.container, key=self.key(), ca_file=NODE_CA_FILE, address=self.address)

    @contextlib.contextmanager
    def forwarded_to(self, node: HostAccess) -> Iterator[BackupRepository]:
        """The repository as ``node`` (of another stack) reaches it during the block: SSH forwards
        the node's ``127.0.0.1:FORWARD_PORT`` through the control machine to the endpoint, the node
        resolves ``host`` to 127.0.0.1 (a line in its /etc/hosts) and verifies it with this stack's
        CA (``FORWARD_CA``). The forward, the line and the CA go on exit, also on error."""
        def on_node(command: str, text: str | None = None) -> subprocess.CompletedProcess:
            return subprocess.run(node.ssh_argv(command), input=text, capture_output=True, text=True, timeout=60)

        forward = subprocess.Popen(["ssh", *node.ssh_args(), "-N", "-o", "ExitOnForwardFailure=yes", "-R",
                                    f"127.0.0.1:{FORWARD_PORT}:{self.address}:{PORT}", f"{node.user}@{node.ssh_host}"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            on_node(f"sudo install -m 0644 /dev/stdin {FORWARD_CA} && "
                    f"echo '127.0.0.1 {self.host} {FORWARD_MARK}' | sudo tee -a /etc/hosts >/dev/null",
                    self.pki.trust.read_text()).check_returncode()
            wait_until(f"the forward from {node.node}'s 127.0.0.1:{FORWARD_PORT} to {self.address}:{PORT}",
                       lambda: forward.poll() is not None or on_node(f"nc -z -w 2 127.0.0.1 {FORWARD_PORT}").returncode == 0,
                       timeout=30, interval=0.5)
            if forward.poll() is not None:
                raise TargetError(f"SSH could not forward {node.node}'s 127.0.0.1:{FORWARD_PORT} to the blob endpoint: "
                                  f"{forward.stderr.read().strip()[-300:]}")
            yield dataclasses.replace(self.repository(), port=FORWARD_PORT, address="127.0.0.1", ca_file=FORWARD_CA)
        finally:
            on_node(f"sudo sed -i '/{FORWARD_MARK}$/d' /etc/hosts; sudo rm -f {FORWARD_CA}")
            forward.terminate()
            forward.wait(timeout=10)

    def pid(self) -> int | None:
        """The running emulator's pid, None when it is not running."""
        pid = self.pidfile.read_text().strip() if self.pidfile.exists() else ""
        return int(pid) if pid and Path(f"/proc/{pid}").exists() else None

    def firewall(self) -> str:
        """The account's network rules as an nft script (atomic: the table is replaced)."""
        spec = self.layout.spec
        return "\n".join([
            f"table inet {FIREWALL}", f"delete table inet {FIREWALL}", f"table inet {FIREWALL} {{",
            "  chain input {", "    type filter hook input priority filter; policy drop;",
            '    iifname "lo" accept', "    ct state established,related accept",
            f'    ip saddr {spec.network.subnet_cidr} tcp dport {PORT} accept comment "network rule: the cluster\'s subnet"',
            f'    ip saddr {self.layout.mgmt.outer} tcp dport {PORT} accept comment "the control plane (management)"',
            "  }", "}", ""])

    def converge(self, log) -> None:
        """Firewall, certificate, emulator running with it, container present. Restarts the
        emulator only when its certificate changed (the data stays)."""
        run(["nft", "-f", "-"], netns=self.layout.storage, input=self.firewall())
        cert = self.pki.service(SERVICE)
        self.pki.ensure_service(SERVICE, [self.host, self.address])
        running = self.pid()
        if running and self.served_cert.exists() and self.served_cert.read_bytes() == cert.cert.read_bytes():
            return self.ensure_container()
        if running:
            log.info("Restarting the blob endpoint (Azurite) with its new certificate.")
            self.stop()
        log.info("Starting the blob endpoint (Azurite %s) on https://%s:%d.", AZURITE_VERSION, self.address, PORT)
        (self.rundir / "data").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cert.cert, self.served_cert)
        argv = ["ip", "netns", "exec", self.layout.storage, "node", str(MAIN), "--blobHost", self.address,
                "--blobPort", str(PORT), "--cert", str(cert.cert), "--key", str(cert.key),
                "--location", str(self.rundir / "data"), "--disableProductStyleUrl", "--skipApiVersionCheck",
                "--loose", "--disableTelemetry", "--silent"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AZURITE_ACCOUNTS": f"{ACCOUNT}:{self.key()}"}
        with open(self.rundir / "azurite.log", "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                    start_new_session=True)
        self.pidfile.write_text(str(proc.pid))
        wait_until(f"the blob endpoint {self.address}:{PORT} to answer (log: {self.rundir / 'azurite.log'})",
                   lambda: proc.poll() is None and tcp(self.address, PORT, 1)["reachable"], timeout=30, interval=0.3)
        self.ensure_container()

    def ensure_container(self) -> None:
        """Create the private container if it is missing (from the control machine, over TLS)."""
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        repo = self.repository()
        client = BlobServiceClient(repo.url, credential={"account_name": repo.account, "account_key": repo.key},
                                   connection_verify=str(self.pki.trust))
        try:
            client.create_container(repo.container)
        except ResourceExistsError:
            pass
        except Exception as exc:  # the SDK's errors carry the service's answer
            raise TargetError(f"creating container {repo.container} at {repo.url} failed: {exc}") from exc

    def stop(self) -> None:
        """Stop the emulator (SIGTERM, then SIGKILL); its data stays."""
        pid = self.pid()
        if pid:
            run(["kill", str(pid)], check=False)
            try:
                wait_until("the blob endpoint to stop", lambda: not Path(f"/proc/{pid}").exists(), timeout=10)
            except WaitTimeout:
                run(["kill", "-9", str(pid)], check=False)
        self.pidfile.unlink(missing_ok=True)
