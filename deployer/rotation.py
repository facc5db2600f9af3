"""``deployer rotate-certs``: a new CA and new node certificates, rolled out node by node under load,
the old CA trusted until every node serves a certificate of the new one.

``rotate`` runs four steps, each node's part one node at a time (replicas first, the leader last,
as ``deployer.rolling`` orders them; the cluster whole before each node), each wait with a deadline:

1. **Trust both CAs.** ``StackPKI.begin_rotation`` makes a new CA current and keeps the old one in
   ``trust.crt``; that bundle becomes every node's ``ca.crt``. Then per node: HAProxy reloaded (its
   checks' ``ca-file``), Patroni reloaded, the etcd member restarted (etcd 3.4 reads its trusted CAs
   only at start) and every etcd member healthy again before the next node. Patroni's and libpq's
   clients read the CA file at each new connection.
2. **New node certificates.** ``Target.ensure_certificates`` re-issues every node's certificate from
   the new CA. Per node: ``node.crt`` and ``node.key`` installed, ``pg_reload_conf()`` (PostgreSQL
   re-reads its certificate on reload), Patroni reloaded (Patroni 4 re-creates its REST API server
   when SIGHUP finds another certificate serial on disk: ``Patroni.reload_config`` calls
   ``RestApiServer.reload_local_certificate``, patroni/__main__.py and patroni/api.py of v4.1.0, so
   no restart and no switchover), the etcd member restarted (its peer connections take the new
   certificate) and healthy, and then the node must serve the new certificate's serial on
   PostgreSQL's, Patroni's and etcd's client port, as seen from another node (``served``).
3. **Trust the new CA only.** Every node's ``ca.crt`` becomes the new CA alone and is reloaded as
   in step 1; only once every node took it does ``StackPKI.end_rotation`` drop the old CA from
   ``trust.crt``.
4. **The record.** Configure's stage fingerprint covers the certificates it ships; it is computed
   again so the next ``up`` does not re-run configure for them, unless the record was stale before
   the rotation began (then it stays stale: something else changed too).

Files reach a node over SSH on stdin (``install``), staged beside their destination and renamed into
place together, with the modes and owners the common role gives them; no key ever travels on a
command line, and nothing here prints, logs or raises with key material.

**Failure and continuation.** Any failure raises ``TargetError`` naming the step and the node. The
rotation is never ended early: until step 3 completed on every node, ``trust.crt`` holds both CAs
(``StackPKI.rotating``). A second ``rotate`` then continues: it makes no new CA (the current one
stays), and runs every step again from the start, each of them idempotent (files installed again,
services reloaded, members restarted, certificates the current CA issued already kept). While a
rotation is under way ``<state dir>/rotation.json`` remembers what the first attempt knew before it
changed anything (the old CA, whether configure's record was valid).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator

from cryptography import x509

from deployer import rolling, tls_probe
from deployer.inventory import TLS_ON_NODE
from deployer.stack import Stack
from deployer.stages import fingerprint
from deployer.targets import TargetError
from deployer.wait import wait_until

log = logging.getLogger("deployer.rotation")

#: Seconds between two looks of a wait (an etcd member's health, a served certificate).
POLL_S = 1.0
#: Beside the stack's state, only while a rotation is under way (see the module docstring).
PENDING_FILE = "rotation.json"
STEPS = ("trust both CAs", "node certificates", "trust the new CA only", "configure's record")


def serial(cert: x509.Certificate) -> str:
    """A certificate's serial number in hex, as ``openssl x509 -serial`` prints it (lower case)."""
    return format(cert.serial_number, "x")


def tls_ports(stack: Stack) -> list[tuple[int, str | None]]:
    """Every TLS port a node serves with its certificate, and the STARTTLS it needs: PostgreSQL,
    Patroni's REST API, etcd's client port (its peer port serves the same certificate)."""
    ports = stack.spec.ports
    return [(ports.postgres, "postgres"), (ports.patroni, None), (ports.etcd_client, None)]


def served(stack: Stack, node: str) -> dict[int, x509.Certificate | str]:
    """The leaf certificate ``node`` serves on each ``tls_ports`` port, as a TLS client on another
    node of the subnet sees it (the ``vnet`` vantage); where none came, the handshake's detail. etcd
    sends its certificate before it refuses a client without one, so its leaf is read all the same."""
    via, address = stack.target.vnet_node(avoid=node), stack.target.address_of(node)
    out: dict[int, x509.Certificate | str] = {}
    for port, starttls in tls_ports(stack):
        shake = tls_probe.handshake(stack.on_node(via), address, port, starttls=starttls)
        out[port] = shake.chain[0] if shake.chain else f"no certificate ({shake.detail})"
    return out


def not_of_current_ca(stack: Stack) -> list[str]:
    """Every node and port whose served leaf was not issued by the stack's current CA (its issuer
    is not the CA's subject), one sentence each naming what it serves; empty: all of them are."""
    ca = x509.load_pem_x509_certificate(stack.target.pki.ca_cert.read_bytes())
    problems = []
    for node in stack.spec.nodes:
        for port, leaf in served(stack, node.name).items():
            if isinstance(leaf, str):
                problems.append(f"{node.name}:{port} serves {leaf}")
            elif leaf.issuer != ca.subject:
                problems.append(f"{node.name}:{port} serves serial {serial(leaf)} issued by "
                                f"{leaf.issuer.rfc4514_string()}, not by the current CA {ca.subject.rfc4514_string()}")
    return problems


def install(stack: Stack, node: str, files: list[tuple[str, str, str, str]]) -> None:
    """Write ``files`` (``(path, text, mode, group)``, owner root) on ``node``: each streamed on
    stdin into ``path.new`` (created under umask 077, then given its group and mode), then every one
    renamed into place in one command, so a reader never sees a certificate without its key."""
    for path, text, mode, group in files:
        stack.ssh(node, ["sudo", "sh", "-c", 'umask 077 && cat > "$1.new" && chgrp "$3" "$1.new" && chmod "$2" "$1.new"',
                         "sh", path, mode, group], input=text)
    stack.ssh(node, ["sudo", "sh", "-c", 'for f; do mv -f "$f.new" "$f"; done', "sh", *(p for p, *_ in files)])


def _ca_file(text: str) -> tuple[str, str, str, str]:
    return TLS_ON_NODE["ca"], text, "0644", "root"


def _one_at_a_time(stack: Stack, step: str) -> Iterator[str]:
    """The nodes, one at a time: replicas first, the leader last, the cluster whole (one running
    leader, every other member streaming) before each."""
    done: list[str] = []
    while len(done) < len(stack.spec.nodes):
        members = rolling.whole(stack.target, f"{step}: the cluster whole before the next node")
        rest = [m for m in members if m.name not in done]
        node = next((m for m in rest if m.role == "replica"), rest[0]).name
        done.append(node)
        yield node


def _restart_etcd(stack: Stack, node: str) -> float:
    """Restart ``node``'s etcd member and wait until every member answers healthy (asked from
    ``node``, with its certificate); the seconds that took."""
    start = time.monotonic()
    stack.ssh(node, ["sudo", "systemctl", "restart", "etcd"], timeout=stack.budgets.rejoin_s)
    count = len(stack.spec.nodes)
    wait_until(f"every etcd member ({count}) healthy after {node}'s member restarted",
               lambda: stack.etcdctl(node, "endpoint", "health", endpoints=stack.etcd_endpoints()),
               lambda health: len(health) == count and all(h.get("health") for h in health),
               timeout=stack.budgets.rejoin_s, interval=POLL_S)
    return time.monotonic() - start


def _reload_trust(stack: Stack, node: str) -> float:
    stack.ssh(node, ["sudo", "systemctl", "reload", "haproxy"])
    stack.ssh(node, ["sudo", "systemctl", "reload", "patroni"])
    return _restart_etcd(stack, node)


def _serves(stack: Stack, node: str, want: str) -> None:
    """Wait until ``node`` serves serial ``want`` on every TLS port. Patroni acts on SIGHUP at the
    top of its next loop: two loops and a few seconds of slack."""
    def seen() -> dict[int, str]:
        return {port: leaf if isinstance(leaf, str) else serial(leaf) for port, leaf in served(stack, node).items()}
    ports = ", ".join(str(p) for p, _ in tls_ports(stack))
    wait_until(f"{node} to serve its new certificate, serial {want}, on ports {ports} (seen: port -> serial)", seen,
               lambda by_port: set(by_port.values()) == {want},
               timeout=2 * stack.spec.patroni.loop_wait + 10, interval=POLL_S)


class _Rotation:
    """One run of ``rotate``: the step and node it is at (for the failure message) and its timings."""

    def __init__(self, stack: Stack, progress: Callable[[str], None]):
        self.stack, self.pki, self.say = stack, stack.target.pki, progress
        self.step, self.node = 0, ""
        self.seconds: dict[str, float] = {}

    def trust(self, bundle: str, what: str) -> None:
        """Steps 1 and 3: ``bundle`` as every node's ``ca.crt``, then each node's readers reloaded."""
        for node in (n.name for n in self.stack.spec.nodes):
            self.node = node
            install(self.stack, node, [_ca_file(bundle)])
        self.say(f"Step {self.step}/4: {what} installed as {TLS_ON_NODE['ca']} on every node.")
        for node in _one_at_a_time(self.stack, STEPS[self.step - 1]):
            self.node = node
            took = _reload_trust(self.stack, node)
            self.say(f"Step {self.step}/4: {node}: HAProxy and Patroni reloaded, its etcd member restarted; every "
                     f"member healthy again {took:.1f} s later.")

    def certificates(self, old: dict[str, str]) -> dict[str, dict[str, str]]:
        """Step 2; ``{node: {"old": serial, "new": serial}}``."""
        stack = self.stack
        issued = stack.target.ensure_certificates()
        self.say(f"Step 2/4: certificates issued by the new CA for {', '.join(issued)}." if issued else
                 "Step 2/4: every node's certificate on the control machine is of the new CA already (a continued "
                 "rotation); installing each again.")
        serials, order = {}, []
        for node in _one_at_a_time(stack, STEPS[1]):
            self.node = node
            start = time.monotonic()
            files = stack.target.pki.node(node)
            new = serial(x509.load_pem_x509_certificate(files.cert.read_bytes()))
            install(stack, node, [(TLS_ON_NODE["cert"], files.cert.read_text(), "0644", "root"),
                                  (TLS_ON_NODE["key"], files.key.read_text(), "0640", "ssl-cert")])
            stack.psql(node, "SELECT pg_reload_conf()")
            stack.ssh(node, ["sudo", "systemctl", "reload", "patroni"])
            _restart_etcd(stack, node)
            _serves(stack, node, new)
            serials[node], order = {"old": old[node], "new": new}, [*order, node]
            self.say(f"Step 2/4: {node} serves its new certificate (serial {new}) on "
                     f"{', '.join(str(p) for p, _ in tls_ports(stack))}, {time.monotonic() - start:.1f} s after "
                     "its install (PostgreSQL and Patroni reloaded, its etcd member restarted).")
        self.order = order
        return serials


def _pending_path(stack: Stack):
    return stack.state.dir / PENDING_FILE


def _node_serials(stack: Stack) -> dict[str, str]:
    files = {n.name: stack.target.pki.node(n.name).cert for n in stack.spec.nodes}
    return {name: serial(x509.load_pem_x509_certificate(p.read_bytes())) if p.exists() else "none"
            for name, p in files.items()}


def rotate(stack: Stack, progress: Callable[[str], None] = log.info) -> dict:
    """Rotate the stack's CA and every node's certificate, as the module says, one sentence per
    action through ``progress``. Returns ``old_cas`` and ``new_ca`` (serials), ``continued`` (a
    rotation begun earlier was continued), ``nodes`` (step 2's order), ``serials`` (``{node: {"old",
    "new"}}``), ``record`` (what happened to configure's record) and ``seconds`` per step.
    ``TargetError`` naming the step and the node when anything fails (the old CA stays trusted), or
    before anything changed when the stack was never configured."""
    state, pki = stack.state, stack.target.pki
    if not state.done("configure") or not pki.ca_cert.exists():
        raise TargetError(f"stack {state.name} has no configured TLS to rotate (configure has not succeeded, or no "
                          f"CA under {pki.dir}); run `deployer up --name {state.name}` first")
    pending = _pending_path(stack)
    continued = pki.rotating
    if continued:
        known = json.loads(pending.read_text()) if pending.exists() else {}
        progress(f"Rotation: continuing the one begun earlier (trust.crt holds {len(pki.trusted())} CAs): the current "
                 f"CA {serial(pki.trusted()[0])} stays; every step runs again.")
    else:
        record = state.stages.get("configure")
        known = {"configure_record_valid": bool(record and record.fingerprint == fingerprint("configure", stack.spec, state))}
    run = _Rotation(stack, progress)
    old_serials = _node_serials(stack)
    try:
        run.step, start = 1, time.monotonic()
        if not continued:
            pki.begin_rotation()
            pending.write_text(json.dumps(known))
        cas = pki.trusted()
        new_ca, old_cas = serial(cas[0]), [serial(c) for c in cas[1:]]
        if not continued:
            progress(f"Rotation: begun: the new CA {new_ca} is current; the old CA {', '.join(old_cas)} stays trusted "
                     "until every node serves a certificate of the new one.")
        run.trust(pki.trust.read_text(), f"the bundle of {len(cas)} CAs (new first)")
        run.seconds[STEPS[0]] = time.monotonic() - start

        run.step, start = 2, time.monotonic()
        serials = run.certificates(old_serials)
        stack.target.renew_endpoint_certificates()
        run.seconds[STEPS[1]] = time.monotonic() - start

        run.step, start, run.node = 3, time.monotonic(), ""
        only_new = pki.ca_cert.read_text()
        run.trust(only_new, f"the new CA {new_ca} alone")
        pki.end_rotation()
        if pki.trust.read_text() != only_new:  # the nodes hold what configure would copy, byte for byte
            raise TargetError(f"trust.crt after end_rotation differs from the CA {new_ca} installed on the nodes")
        progress(f"Step 3/4: the old CA {', '.join(old_cas)} is trusted no more, here or on any node.")
        run.seconds[STEPS[2]] = time.monotonic() - start
    except Exception as exc:  # noqa: BLE001 - every failure is reported as the step and node it stopped at
        where = f" on {run.node}" if run.node else ""
        kept = ("trust.crt keeps every CA it held (the old one included)" if pki.rotating
                else "nothing changed (no rotation had begun)")
        raise TargetError(f"rotate-certs stopped at step {run.step}/4 ({STEPS[run.step - 1]}){where}: {exc}. {kept}; "
                          f"`deployer rotate-certs --name {state.name}` continues the rotation.") from exc

    run.step, start = 4, time.monotonic()
    record = state.stages.get("configure")
    if record and known.get("configure_record_valid", True):
        record.fingerprint = fingerprint("configure", stack.spec, state)
        state.save()
        said = "re-fingerprinted: the next `up` skips configure for these certificates"
    else:
        said = "left as it was: it was stale before the rotation, so the next `up` runs configure"
    pending.unlink(missing_ok=True)
    progress(f"Step 4/4: configure's record {said}.")
    run.seconds[STEPS[3]] = time.monotonic() - start
    return {"old_cas": old_cas, "new_ca": new_ca, "continued": continued, "nodes": run.order, "serials": serials,
            "record": said, "seconds": {k: round(v, 2) for k, v in run.seconds.items()}}
