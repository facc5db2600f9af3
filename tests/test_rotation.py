"""``deployer rotate-certs`` (``deployer.rotation``) against a simulated cluster: a real PKI in a
temporary state directory, nodes whose files, services and served certificates the fake stack
keeps. The steps run in order, one node at a time (replicas first, the leader last), each etcd
restart waits for every member healthy; a failure names its step and node and keeps the old CA
trusted, and a second run continues it; no key material reaches a progress line, a log record or
an error; configure's record is re-fingerprinted unless it was stale before."""

from __future__ import annotations

import logging
import types
from pathlib import Path

import pytest
from cryptography import x509

import deployer.state
from deployer import patroni, rotation, tls_probe
from deployer.inventory import TLS_ON_NODE
from deployer.patroni import Member
from deployer.pki import StackPKI, load_certs
from deployer.spec import DEFAULT_SPEC, load_spec
from deployer.stages import fingerprint
from deployer.state import StackState
from deployer.targets import TargetError
from deployer.wait import MULTIPLIER_ENV

SPEC = load_spec()
NODES = [n.name for n in SPEC.nodes]
LEADER = "pg1"
#: Replicas first (in Patroni's order), the leader last.
ORDER = ["pg2", "pg3", "pg1"]
BASENAME = {path: Path(path).name for path in TLS_ON_NODE.values()}


class FakeTarget:
    def __init__(self, state: StackState):
        self.spec, self.state = SPEC, state
        self.pki = StackPKI(state.dir, SPEC.name)
        self.budgets = types.SimpleNamespace(rejoin_s=5)

    def ensure_certificates(self) -> list[str]:
        return self.pki.ensure([(n.name, str(n.address)) for n in SPEC.nodes], ["192.0.2.10"])

    def renew_endpoint_certificates(self) -> None:
        """Records how many CAs were trusted when the target's own endpoints (the blob endpoint) renewed."""
        self.renewed_while_trusting = len(self.pki.trusted())

    def address_of(self, node: str) -> str:
        return str(SPEC.node(node).address)

    def vnet_node(self, avoid: str = "") -> str:
        return next(n for n in NODES if n != avoid)


class FakeStack:
    """Nodes as files (``files[node][path]``), what each port serves (``served[node][port]``: the
    PEM of the certificate the service loaded), and ``events``: one line per action on a node.
    ``fail``: ``(node, command fragment, nth)`` makes the nth such command on that node fail."""

    def __init__(self, fail: tuple[str, str, int] | None = None):
        self.spec = SPEC
        self.state = StackState(name="fake", target="local", spec_path=str(DEFAULT_SPEC))
        self.target = FakeTarget(self.state)
        self.target.ensure_certificates()
        pki = self.target.pki
        self.files = {n: {TLS_ON_NODE["ca"]: pki.trust.read_text(), TLS_ON_NODE["cert"]: pki.node(n).cert.read_text(),
                          TLS_ON_NODE["key"]: pki.node(n).key.read_text()} for n in NODES}
        self.served = {n: dict.fromkeys((5432, 8008, 2379), pki.node(n).cert.read_text()) for n in NODES}
        self.events: list[tuple[str, str]] = []
        self.inputs: list[str] = []
        self.restarting: set[str] = set()
        self.fail, self.seen_commands = fail, {}
        self.state.record("provision", ok=True, seconds=1)
        self.state.record("configure", ok=True, seconds=1, fingerprint=fingerprint("configure", SPEC, self.state))

    @property
    def budgets(self):
        return self.target.budgets

    def _maybe_fail(self, node: str, line: str) -> None:
        if self.fail and self.fail[0] == node and self.fail[1] in line:
            self.seen_commands[line] = self.seen_commands.get(line, 0) + 1
            if self.seen_commands[line] == self.fail[2]:
                raise TargetError(f"on {node}: `{line}` failed (1): Job for etcd.service failed")

    def ssh(self, node, command, timeout=60, check=True, input=None):
        line = " ".join(command)
        self._maybe_fail(node, line)
        files = self.files[node]
        if "cat >" in line:
            self.inputs.append(input)
            files[command[5] + ".new"] = input
        elif "mv -f" in line:
            paths = command[5:]
            for path in paths:
                files[path] = files.pop(path + ".new")
            what = " ".join(BASENAME[p] for p in paths)
            if TLS_ON_NODE["ca"] in paths:
                what += f" ({len(load_certs(files[TLS_ON_NODE['ca']].encode()))} CAs)"
            self.events.append((node, f"install {what}"))
        elif line == "sudo systemctl reload haproxy":
            self.events.append((node, "reload haproxy"))
        elif line == "sudo systemctl reload patroni":
            self.served[node][8008] = files[TLS_ON_NODE["cert"]]  # Patroni 4: a new serial on SIGHUP
            self.events.append((node, "reload patroni"))
        elif line == "sudo systemctl restart etcd":
            self.served[node][2379] = files[TLS_ON_NODE["cert"]]
            self.restarting.add(node)
            self.events.append((node, "restart etcd"))
        else:
            raise AssertionError(f"unexpected command on {node}: {line}")
        return types.SimpleNamespace(returncode=0, stdout="", stderr="")

    def psql(self, node, query, dbname="postgres"):
        assert query == "SELECT pg_reload_conf()", query
        self.served[node][5432] = self.files[node][TLS_ON_NODE["cert"]]
        self.events.append((node, "reload postgresql"))
        return [["t"]]

    def etcdctl(self, node, *args, endpoints=None, parse=True):
        assert args == ("endpoint", "health") and endpoints == self.etcd_endpoints(), (args, endpoints)
        if self.restarting:  # a restarted member answers only at the second look
            self.events.append((node, f"etcd: {', '.join(sorted(self.restarting))} not healthy yet"))
            self.restarting.clear()
            raise TargetError(f"on {node}: etcdctl endpoint health failed (1): unhealthy cluster")
        self.events.append((node, "etcd healthy"))
        return [{"endpoint": f"https://{self.target.address_of(n)}:2379", "health": True} for n in NODES]

    def etcd_endpoints(self) -> str:
        return ",".join(f"https://{n.address}:2379" for n in SPEC.nodes)

    def on_node(self, node: str) -> list[str]:
        return ["ssh", node, "--"]

    def handshake(self, prefix, host, port, *, starttls=None, **_):
        node = next(n for n in NODES if self.target.address_of(n) == host)
        assert prefix[1] != node, f"{node} probed from itself"
        assert (starttls == "postgres") == (port == 5432), (port, starttls)
        leaf = x509.load_pem_x509_certificate(self.served[node][port].encode())
        return tls_probe.Handshake(True, "TLSv1.3", [leaf], None, f"{host}:{port}: TLSv1.3 accepted")

    def serial_of(self, node: str) -> str:
        return rotation.serial(x509.load_pem_x509_certificate(self.target.pki.node(node).cert.read_bytes()))


@pytest.fixture(autouse=True)
def _simulated(tmp_path, monkeypatch):
    monkeypatch.setattr(deployer.state, "STATE_ROOT", tmp_path)
    monkeypatch.setattr(rotation, "POLL_S", 0.01)
    members = [Member(n, "", "leader" if n == LEADER else "replica", "running" if n == LEADER else "streaming", 0, 1)
               for n in NODES]
    monkeypatch.setattr(patroni, "cluster", lambda target, timeout=3.0: members)


@pytest.fixture
def make_stack(monkeypatch):
    def make(**kw) -> FakeStack:
        fake = FakeStack(**kw)
        monkeypatch.setattr(rotation.tls_probe, "handshake", fake.handshake)
        return fake
    return make


def _trust_step(cas: int) -> list[tuple[str, str]]:
    out = [(n, f"install ca.crt ({cas} CAs)") for n in NODES]
    for n in ORDER:
        out += [(n, "reload haproxy"), (n, "reload patroni"), (n, "restart etcd"), (n, f"etcd: {n} not healthy yet"),
                (n, "etcd healthy")]
    return out


def _cert_step() -> list[tuple[str, str]]:
    return [e for n in ORDER for e in ((n, "install node.crt node.key"), (n, "reload postgresql"), (n, "reload patroni"),
                                       (n, "restart etcd"), (n, f"etcd: {n} not healthy yet"), (n, "etcd healthy"))]


def test_trust_both_then_certificates_replicas_first_then_trust_the_new_ca_only(make_stack):
    fake = make_stack()
    old_ca = rotation.serial(fake.target.pki.trusted()[0])
    old = {n: fake.serial_of(n) for n in NODES}
    said: list[str] = []
    done = rotation.rotate(fake, progress=said.append)

    # Every node's part is contiguous (one node at a time) and each etcd restart is followed by a
    # failed health look and a healthy one before anything happens on the next node.
    assert fake.events == _trust_step(2) + _cert_step() + _trust_step(1)
    pki = fake.target.pki
    new_ca = pki.trusted()[0]
    assert len(pki.trusted()) == 1 and rotation.serial(new_ca) == done["new_ca"] != old_ca
    assert done["old_cas"] == [old_ca] and done["nodes"] == ORDER and done["continued"] is False
    assert done["serials"] == {n: {"old": old[n], "new": fake.serial_of(n)} for n in ORDER}
    assert not set(old.values()) & {s["new"] for s in done["serials"].values()}
    assert list(done["seconds"]) == list(rotation.STEPS)
    for n in NODES:  # what the nodes hold and serve: the new CA alone, certificates it issued
        assert fake.files[n][TLS_ON_NODE["ca"]] == pki.trust.read_text() == pki.ca_cert.read_text()
        assert set(fake.served[n].values()) == {pki.node(n).cert.read_text()}
        assert x509.load_pem_x509_certificate(fake.served[n][8008].encode()).issuer == new_ca.subject
    assert not (fake.state.dir / rotation.PENDING_FILE).exists()
    assert fake.target.renewed_while_trusting == 2, "the target's own endpoints renew while both CAs are trusted"
    # One sentence per action: the CA, each step's install or issue and each node, the old CA gone, the record.
    assert [line.split(":")[0] for line in said] == ["Rotation", *["Step 1/4"] * 4, *["Step 2/4"] * 4,
                                                     *["Step 3/4"] * 5, "Step 4/4"], said
    assert said[0].startswith(f"Rotation: begun: the new CA {done['new_ca']} is current")


def test_files_are_installed_with_the_modes_and_groups_the_common_role_gives_them(make_stack):
    fake = make_stack()
    commands = []
    ssh = fake.ssh
    fake.ssh = lambda node, command, **kw: (commands.append(command), ssh(node, command, **kw))[1]
    rotation.rotate(fake, progress=lambda m: None)
    staged = {(c[5], c[6], c[7]) for c in commands if "cat >" in c[3]}
    assert staged == {(TLS_ON_NODE["ca"], "0644", "root"), (TLS_ON_NODE["cert"], "0644", "root"),
                      (TLS_ON_NODE["key"], "0640", "ssl-cert")}
    assert all(c[3].startswith("umask 077 && ") for c in commands if "cat >" in c[3])


def test_a_failure_midway_names_its_step_and_node_keeps_both_cas_and_a_second_run_continues(make_stack):
    fake = make_stack(fail=("pg3", "sudo systemctl restart etcd", 2))  # pg3's etcd in step 2
    with pytest.raises(TargetError) as failed:
        rotation.rotate(fake, progress=lambda m: None)
    message = str(failed.value)
    assert "step 2/4 (node certificates) on pg3" in message and "Job for etcd.service failed" in message, message
    assert "`deployer rotate-certs --name fake` continues" in message
    pki = fake.target.pki
    assert pki.rotating and len(pki.trusted()) == 2
    new_ca = rotation.serial(pki.trusted()[0])
    # Nothing after the failure: pg2 done, pg3 stopped at its etcd restart, the leader untouched.
    assert fake.events[-1] == ("pg3", "reload patroni")
    assert fake.files["pg1"][TLS_ON_NODE["ca"]] == pki.trust.read_text()  # both CAs on every node
    assert rotation.serial(x509.load_pem_x509_certificate(fake.served["pg1"][5432].encode())) != fake.serial_of("pg1")
    before = fake.state.stages["configure"].fingerprint

    said: list[str] = []
    fake.events.clear()
    done = rotation.rotate(fake, progress=said.append)
    assert done["continued"] is True and done["new_ca"] == new_ca, "a continued rotation makes no new CA"
    assert said[0].startswith(f"Rotation: continuing the one begun earlier (trust.crt holds 2 CAs): the current CA {new_ca}")
    assert any("certificate on the control machine is of the new CA already" in s for s in said)
    assert fake.events == _trust_step(2) + _cert_step() + _trust_step(1)
    assert not pki.rotating and rotation.serial(pki.trusted()[0]) == new_ca
    # The first attempt found the record valid: the continued one re-fingerprints it.
    assert fake.state.stages["configure"].fingerprint == fingerprint("configure", SPEC, fake.state) != before


def test_a_failure_in_the_last_trust_step_keeps_the_old_ca_in_trust_crt(make_stack):
    fake = make_stack(fail=("pg3", "sudo systemctl restart etcd", 3))  # pg3's etcd in step 3
    with pytest.raises(TargetError, match=r"step 3/4 \(trust the new CA only\) on pg3"):
        rotation.rotate(fake, progress=lambda m: None)
    assert fake.target.pki.rotating and len(fake.target.pki.trusted()) == 2


def test_a_node_that_keeps_serving_its_old_certificate_fails_naming_node_port_and_serials(make_stack, monkeypatch):
    monkeypatch.setenv(MULTIPLIER_ENV, "0.02")  # the serving deadline: a fraction of a second
    fake = make_stack()
    old_8008 = fake.serial_of("pg2")
    ssh = fake.ssh

    def patroni_never_reloads_on_pg2(node, command, **kw):
        if node == "pg2" and command[-1] == "patroni" and fake.target.pki.node("pg2").cert.read_text() == \
                fake.files["pg2"][TLS_ON_NODE["cert"]]:
            fake.events.append((node, "reload patroni (ignored)"))
            return types.SimpleNamespace(returncode=0, stdout="", stderr="")
        return ssh(node, command, **kw)
    fake.ssh = patroni_never_reloads_on_pg2
    with pytest.raises(TargetError) as failed:
        rotation.rotate(fake, progress=lambda m: None)
    message, new = str(failed.value), fake.serial_of("pg2")
    assert "step 2/4 (node certificates) on pg2" in message, message
    assert f"pg2 to serve its new certificate, serial {new}, on ports 5432, 8008, 2379" in message, message
    assert f"8008: '{old_8008}'" in message and f"5432: '{new}'" in message, message
    assert fake.target.pki.rotating


def test_no_key_material_in_progress_logs_or_errors(make_stack, caplog):
    """The negative control first: the keys did travel, on stdin, so a leak would be findable."""
    caplog.set_level(logging.DEBUG)
    fake = make_stack(fail=("pg1", "sudo systemctl restart etcd", 3))  # the leader, in step 3: after every install
    said: list[str] = []
    with pytest.raises(TargetError) as failed:
        rotation.rotate(fake, progress=said.append)
    pki = fake.target.pki
    def body(pem: str) -> list[str]:
        return [line for line in pem.splitlines() if "-----" not in line and len(line) > 20]
    node_keys = [line for n in NODES for line in body(pki.node(n).key.read_text())]
    assert node_keys and all(any(b in sent for sent in fake.inputs) for b in node_keys), \
        "the node keys were installed over stdin (the control: a leak could be seen)"
    bodies = node_keys + body(pki.ca_key.read_text())
    told = "\n".join([*said, caplog.text, str(failed.value), repr(failed.value)])
    assert "PRIVATE KEY" not in told and not [b for b in bodies if b in told]


def test_configure_record_refingerprinted_unless_it_was_stale_before(make_stack):
    fake = make_stack()
    before = fake.state.stages["configure"].fingerprint
    done = rotation.rotate(fake, progress=lambda m: None)
    after = StackState.load("fake").stages["configure"].fingerprint
    assert after == fingerprint("configure", SPEC, fake.state) != before
    assert done["record"].startswith("re-fingerprinted")

    fake.state.stages["configure"].fingerprint = "stale: ansible/ changed since"
    fake.state.save()
    done = rotation.rotate(fake, progress=lambda m: None)
    assert fake.state.stages["configure"].fingerprint == "stale: ansible/ changed since"
    assert done["record"].startswith("left as it was")


def test_a_stack_never_configured_is_refused_before_anything_changes(make_stack):
    fake = make_stack()
    fake.state.stages.pop("configure")
    ca = fake.target.pki.ca_cert.read_bytes()
    with pytest.raises(TargetError, match="no configured TLS to rotate"):
        rotation.rotate(fake, progress=lambda m: None)
    assert fake.events == [] and fake.target.pki.ca_cert.read_bytes() == ca
