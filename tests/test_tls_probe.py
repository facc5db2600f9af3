"""The TLS probes (``deployer.tls_probe``) against real servers on loopback: ``openssl s_server``
processes with certificates of a ``StackPKI`` in a temporary directory, a plain ``http.server``, and
fake PostgreSQL servers answering the SSLRequest. Every refusal the probes report is paired with a
server that accepts the same offer, so a probe that could only say "refused" fails here."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deployer import tls_probe
from deployer.pki import StackPKI
from deployer.tls_probe import handshake
from deployer.wait import wait_until

HOST = "127.0.0.1"
LEGACY = ["-cipher", "DEFAULT:@SECLEVEL=0"]  # the server side of the legacy offer: its own floor lowered
TLS12_ONLY = ["-min_protocol", "TLSv1.2", *LEGACY]  # refuses 1.0/1.1 for the version alone, not for a cipher
TLS10_UP = ["-min_protocol", "TLSv1", *LEGACY]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> StackPKI:
    stack = StackPKI(tmp_path_factory.mktemp("stack"), "pgha")
    stack.ensure([("pg1", HOST), ("pg2", "10.0.0.12")], ["pgha.example.net"])
    return stack


@pytest.fixture(scope="module")
def other(tmp_path_factory) -> StackPKI:
    """Another stack's CA: same names, another key."""
    stack = StackPKI(tmp_path_factory.mktemp("other"), "pgha")
    stack.ensure([("pg1", HOST)], ["pgha.example.net"])
    return stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
        return True
    return False


@contextlib.contextmanager
def server(argv: list[str], port: int, **popen):
    """Run ``argv`` (listening on ``port``) until the block ends; killed whatever happens."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            **popen)
    try:
        wait_until(f"{argv[0]} listening on {HOST}:{port}", lambda: proc.poll() is None and listening(port),
                   timeout=10, interval=0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


def s_server(pki: StackPKI, node: str, *args: str):
    port = free_port()
    return server(["openssl", "s_server", "-accept", f"{HOST}:{port}", "-cert", str(pki.node(node).cert),
                   "-key", str(pki.node(node).key), "-www", "-quiet", *args], port)


def crafted(pki: StackPKI, *, sans: list[x509.GeneralName] | None, days: float, cn: str = "pg1") -> x509.Certificate:
    """A certificate of ``pki``'s CA with exactly these SANs (None: no SAN extension) and end."""
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca.subject).public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
               .serial_number(x509.random_serial_number()).not_valid_after(end)
               .not_valid_before(min(end, ca.not_valid_before_utc) - dt.timedelta(days=1))
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def leaf(pki: StackPKI, node: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.node(node).cert.read_bytes())


# ----- protocol versions -----

@pytest.mark.parametrize("protocol", ["tls1", "tls1_1"])
def test_a_legacy_handshake_is_refused_by_a_tls12_server_and_accepted_by_one_that_allows_it(pki, protocol):
    with s_server(pki, "pg1", *TLS12_ONLY) as port:
        refused = handshake([], HOST, port, protocol=protocol)
    assert not refused.accepted and refused.protocol is None and refused.verified is None
    assert refused.detail.startswith(f"{HOST}:{port}: {protocol} refused: ") and "protocol version" in refused.detail
    # The negative control: the same offer is accepted where the server allows it, so the refusal
    # above is the server's, not the client's own floor.
    with s_server(pki, "pg1", *TLS10_UP) as port:
        accepted = handshake([], HOST, port, protocol=protocol)
    assert accepted.accepted, accepted.detail
    assert accepted.protocol == {"tls1": "TLSv1", "tls1_1": "TLSv1.1"}[protocol]
    assert accepted.chain == [leaf(pki, "pg1")]


def test_without_the_lowered_floor_the_client_refuses_tls11_by_itself(pki):
    """Why ``LEGACY_CIPHERS`` exists: OpenSSL 3.0's client at its default level cannot do TLS 1.1."""
    with s_server(pki, "pg1", *TLS10_UP) as port:
        plain = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-tls1_1"],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
        assert "Cipher is (NONE)" in plain.stdout
        assert handshake([], HOST, port, protocol="tls1_1").accepted


@pytest.mark.parametrize(("protocol", "seen"), [("tls1_2", "TLSv1.2"), ("tls1_3", "TLSv1.3")])
def test_a_modern_handshake_reports_the_negotiated_version_and_the_chain(pki, protocol, seen):
    with s_server(pki, "pg1", *TLS12_ONLY) as port:
        result = handshake([], HOST, port, protocol=protocol)
    assert (result.accepted, result.protocol, result.verified) == (True, seen, None)
    assert result.chain == [leaf(pki, "pg1")]
    assert result.detail.startswith(f"{HOST}:{port}: {seen} accepted, ")


def test_a_server_capped_below_the_offer_refuses_it(pki):
    """The other direction: a server that stops at TLS 1.2 refuses a TLS 1.3-only client."""
    with s_server(pki, "pg1", "-max_protocol", "TLSv1.2") as port:
        assert not handshake([], HOST, port, protocol="tls1_3").accepted
        assert handshake([], HOST, port, protocol="tls1_2").protocol == "TLSv1.2"


def test_the_prefix_runs_the_probe_and_is_named(pki):
    with s_server(pki, "pg1") as port:
        result = handshake(["env", "LC_ALL=C"], HOST, port, protocol="tls1_3")
    assert result.accepted and result.detail.startswith(f"{HOST}:{port} via env LC_ALL=C: TLSv1.3 accepted")


def test_no_key_material_in_what_a_handshake_returns(pki):
    with s_server(pki, "pg1", *TLS12_ONLY) as port:
        raw = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-tls1_2"],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10).stdout
        result = handshake([], HOST, port, protocol="tls1_2", ca_file=pki.trust)
    assert "Master-Key:" in raw  # the control: openssl does print the session's secret
    master = raw.split("Master-Key:")[1].split()[0]
    assert master not in repr(result) + str(result) and "PRIVATE" not in repr(result) + str(result)


# ----- failures to connect -----

def test_a_closed_port_is_no_connection():
    port = free_port()
    result = handshake([], HOST, port)
    assert not result.accepted and result.detail == f"{HOST}:{port}: no connection: Connection refused (calling connect())"


def test_a_silent_server_is_bounded_by_the_timeout():
    with socket.socket() as silent:  # listens, never accepts: the kernel completes the connection, nobody answers
        silent.bind((HOST, 0))
        silent.listen()
        port = silent.getsockname()[1]
        result = handshake([], HOST, port, protocol="tls1_3", timeout=1)
    assert not result.accepted and result.detail == f"{HOST}:{port}: no TLS answer within 1s (tls1_3 offered)"


def test_unknown_protocol_or_starttls_is_a_caller_error():
    with pytest.raises(ValueError, match="sslv3"):
        handshake([], HOST, 1, protocol="sslv3")
    with pytest.raises(ValueError, match="smtp"):
        handshake([], HOST, 1, starttls="smtp")


# ----- verification against a CA -----

def test_the_chain_verifies_against_its_own_ca_only(pki, other):
    with s_server(pki, "pg1", *TLS12_ONLY) as port:
        right = handshake([], HOST, port, ca_file=pki.trust)
        wrong = handshake([], HOST, port, ca_file=other.trust)
    assert right.accepted and right.verified is True and right.detail.endswith("verify 0 (ok)")
    assert wrong.accepted and wrong.verified is False
    assert "verify 2" in wrong.detail or "verify 20" in wrong.detail, wrong.detail  # unable to get (local) issuer
    assert tls_probe.chain_verifies(right.chain, pki.trust)
    assert not tls_probe.chain_verifies(right.chain, other.trust)
    assert "candidates exhausted" in tls_probe.chain_problem(right.chain, other.trust)
    assert tls_probe.chain_problem(right.chain, pki.trust) is None
    assert not tls_probe.chain_verifies([], pki.trust)


def test_during_a_rotation_both_cas_are_trusted(tmp_path):
    stack = StackPKI(tmp_path, "rot")
    stack.ensure([("pg1", HOST)], [])
    old = [leaf(stack, "pg1")]
    stack.begin_rotation()
    stack.ensure([("pg1", HOST)], [])
    assert tls_probe.chain_verifies(old, stack.trust) and tls_probe.chain_verifies([leaf(stack, "pg1")], stack.trust)
    assert not tls_probe.chain_verifies(old, stack.ca_cert)  # the control: the new CA alone does not vouch for it
    stack.end_rotation()
    assert not tls_probe.chain_verifies(old, stack.trust)


def test_chain_problem_with_a_name_checks_the_name_too(pki):
    chain = [leaf(pki, "pg1")]
    assert tls_probe.chain_problem(chain, pki.trust, HOST) is None
    assert tls_probe.chain_problem(chain, pki.trust, "pgha.example.net") is None
    assert "subjectAltName" in tls_probe.chain_problem(chain, pki.trust, "10.0.0.12")


def test_an_expired_certificate_does_not_verify(pki):
    expired = crafted(pki, sans=[x509.DNSName("pg1")], days=-1)
    assert "not valid at validation time" in tls_probe.chain_problem([expired], pki.trust)
    assert tls_probe.chain_verifies([crafted(pki, sans=[x509.DNSName("pg1")], days=10)], pki.trust)


# ----- names -----

def test_a_node_certificate_matches_its_names_and_no_other(pki):
    cert = leaf(pki, "pg1")
    for name in (HOST, "pg1", "PG1.", "localhost", "pgha.example.net"):
        assert tls_probe.name_matches(cert, name), name
    for name in ("10.0.0.12", "pg2", "example.net", "127.0.0.2"):
        assert not tls_probe.name_matches(cert, name), name
    # The certificate of the wrong node: its own names, not pg1's.
    wrong = leaf(pki, "pg2")
    assert tls_probe.name_matches(wrong, "10.0.0.12") and not tls_probe.name_matches(wrong, "pg1")


def test_an_address_matches_an_ip_san_only_and_the_cn_never(pki):
    spelled = crafted(pki, sans=[x509.DNSName("10.0.0.9")], days=100, cn="10.0.0.9")
    assert not tls_probe.name_matches(spelled, "10.0.0.9")
    bare = crafted(pki, sans=None, days=100, cn="pg1")
    assert not tls_probe.name_matches(bare, "pg1")
    six = crafted(pki, sans=[x509.IPAddress(ipaddress.ip_address("fd00::9"))], days=100)
    assert tls_probe.name_matches(six, "fd00:0::9") and not tls_probe.name_matches(six, "fd00::8")


def test_a_wildcard_covers_one_leftmost_label(pki):
    cert = crafted(pki, sans=[x509.DNSName("*.db.example.net")], days=100)
    assert tls_probe.name_matches(cert, "pg1.db.example.net")
    assert not tls_probe.name_matches(cert, "a.pg1.db.example.net")
    assert not tls_probe.name_matches(cert, "db.example.net")


# ----- expiry -----

@pytest.mark.parametrize(("days", "verdict"), [(400, "ok"), (40, "ok"), (20, "warn"), (3, "fail"), (-2, "fail")])
def test_expiry_verdict(pki, days, verdict):
    got, left = tls_probe.expiry_verdict(crafted(pki, sans=[x509.DNSName("pg1")], days=days))
    assert got == verdict and left == pytest.approx(days, abs=0.01)


def test_expiry_thresholds_are_exact(pki):
    cert = crafted(pki, sans=[x509.DNSName("pg1")], days=100)
    end = cert.not_valid_after_utc
    at = {d: tls_probe.expiry_verdict(cert, now=end - dt.timedelta(days=d))[0]
          for d in (tls_probe.WARN_DAYS, tls_probe.WARN_DAYS - 0.01, tls_probe.FAIL_DAYS, tls_probe.FAIL_DAYS - 0.01)}
    assert list(at.values()) == ["ok", "warn", "warn", "fail"]


# ----- plain HTTP -----

def test_a_tls_port_does_not_answer_plain_http_and_a_plain_server_does(pki, tmp_path):
    with s_server(pki, "pg1") as port:
        assert tls_probe.plaintext_http([], HOST, port) is None
        assert handshake([], HOST, port, protocol="tls1_3").accepted  # the control: a live TLS server
    port = free_port()
    with server([sys.executable, "-m", "http.server", "--bind", HOST, str(port)], port, cwd=tmp_path):
        line = tls_probe.plaintext_http(["env"], HOST, port)
        missing = tls_probe.plaintext_http([], HOST, port, path="/nothing-here")
    assert line is not None and line.startswith("HTTP/1.0 200") and tls_probe.serves_plain_http(line)
    assert missing.startswith("HTTP/1.0 404") and tls_probe.serves_plain_http(missing)
    assert tls_probe.plaintext_http([], HOST, free_port()) is None


@pytest.mark.parametrize(("line", "serves"), [
    (None, False), ("HTTP/1.1 400 The plain HTTP request was sent to HTTPS port", False),
    ("HTTP/1.1 426 Upgrade Required", False), ("HTTP/1.1 497 HTTP to HTTPS", False),
    ("HTTP/1.0 200 OK", True), ("HTTP/1.0 301 Moved", True), ("HTTP/1.0 401 Unauthorized", True),
    ("HTTP/1.0 404 Not Found", True), ("HTTP/1.0 503 Service Unavailable", True), ("garbage", False)])
def test_what_counts_as_serving_plain_http(line, serves):
    assert tls_probe.serves_plain_http(line) is serves


# ----- STARTTLS postgres -----

@contextlib.contextmanager
def fake_postgres(answer: bytes, context: ssl.SSLContext | None = None):
    """Answers one SSLRequest with ``answer``; on ``S`` does the TLS handshake with ``context``.
    Yields the port and the list the request it read lands in."""
    listener = socket.create_server((HOST, 0))
    seen: list[bytes] = []

    def serve():
        with contextlib.suppress(OSError), listener.accept()[0] as conn:
            conn.settimeout(5)
            seen.append(conn.recv(8))
            conn.sendall(answer)
            if context and answer == b"S":
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)  # until the client leaves
            else:
                conn.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        listener.close()
        thread.join(timeout=10)


SSL_REQUEST = bytes([0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F])


def test_starttls_postgres_refused_by_a_server_without_ssl():
    with fake_postgres(b"N") as (port, seen):
        result = handshake([], HOST, port, starttls="postgres")
    assert seen == [SSL_REQUEST]
    assert not result.accepted and "the server refused SSL" in result.detail and f"{HOST}:{port}" in result.detail


def test_starttls_postgres_accepted_by_a_server_with_ssl(pki):
    """The negative control of the refusal above: the same probe completes TLS behind an ``S``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pki.node("pg1").cert, pki.node("pg1").key)
    with fake_postgres(b"S", context) as (port, seen):
        result = handshake([], HOST, port, starttls="postgres", protocol="tls1_3", ca_file=pki.trust)
    assert seen == [SSL_REQUEST]
    assert (result.accepted, result.protocol, result.verified) == (True, "TLSv1.3", True), result.detail
    assert result.chain == [leaf(pki, "pg1")]
