"""The stack's CA and node certificates (``deployer.pki``), in a temporary state directory: what
``ensure`` creates and with which modes, when it re-issues (names, expiry, a new CA) and when it
must not, a CA rotation judged by ``openssl verify`` against ``trust.crt``, the certificates'
extensions as a TLS stack reads them, and the fingerprint material free of private keys."""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from deployer import pki
from deployer.pki import StackPKI

NODES = [("pg1", "10.0.0.11"), ("pg2", "10.0.0.12"), ("pg3", "10.0.0.13")]
FRONTEND = ["10.0.1.4", "pgha.example.net"]


@pytest.fixture
def tls(tmp_path) -> StackPKI:
    return StackPKI(tmp_path / "state", "pgha")


def cert_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def serials(tls: StackPKI) -> dict[str, int]:
    return {name: cert_of(tls.node(name).cert).serial_number for name, _ in NODES}


def openssl_verify(ca_file: Path, cert: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "verify", "-CAfile", str(ca_file), str(cert)],
                          capture_output=True, text=True, timeout=30)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_creates_the_ca_and_every_node_certificate_private_from_the_start(tls):
    old = os.umask(0)  # a permissive umask: the modes must come from pki itself, not from the process
    try:
        assert tls.ensure(NODES, FRONTEND) == ["pg1", "pg2", "pg3"]
    finally:
        os.umask(old)
    assert mode(tls.dir) == 0o700 and mode(tls.dir / "nodes") == 0o700
    keys = [tls.ca_key, *(tls.node(n).key for n, _ in NODES)]
    assert {k.name: mode(k) for k in keys} == {k.name: 0o600 for k in keys}
    assert all(b"PRIVATE KEY" in k.read_bytes() for k in keys)
    # The control: under that umask a file created without care is world-readable.
    plain = tls.dir / "plain"
    old = os.umask(0)
    try:
        plain.write_text("x")
    finally:
        os.umask(old)
    assert mode(plain) & 0o077
    ca = cert_of(tls.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert [c.fingerprint(hashes.SHA256()) for c in tls.trusted()] == [ca.fingerprint(hashes.SHA256())]
    for name, _ in NODES:
        cert = cert_of(tls.node(name).cert)
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        assert openssl_verify(tls.trust, tls.node(name).cert).returncode == 0


def test_a_second_ensure_issues_nothing_and_changes_no_byte(tls):
    tls.ensure(NODES, FRONTEND)
    before = {p: p.read_bytes() for p in tls.dir.rglob("*") if p.is_file()}
    assert tls.ensure(NODES, FRONTEND) == []
    assert {p: p.read_bytes() for p in tls.dir.rglob("*") if p.is_file()} == before


def test_a_changed_name_list_reissues_exactly_the_nodes_it_touches(tls):
    tls.ensure(NODES, FRONTEND)
    first = serials(tls)
    moved = [("pg1", "10.0.0.11"), ("pg2", "10.0.0.22"), ("pg3", "10.0.0.13")]
    assert tls.ensure(moved, FRONTEND) == ["pg2"]
    second = serials(tls)
    assert second["pg2"] != first["pg2"] and {second["pg1"], second["pg3"]} == {first["pg1"], first["pg3"]}
    assert ipaddress.ip_address("10.0.0.22") in cert_of(tls.node("pg2").cert).extensions \
        .get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)
    # The frontend's names are on every node's certificate: a new one re-issues all of them.
    assert tls.ensure(moved, [*FRONTEND, "pgha2.example.net"]) == ["pg1", "pg2", "pg3"]
    assert tls.ensure(moved, [*FRONTEND, "pgha2.example.net"]) == []


def test_an_address_spelled_otherwise_is_the_same_name(tls):
    """An IPv6 address not in canonical form is compared as the certificate spells it."""
    assert tls.ensure([("pg1", "fd00:0:0::11")], []) == ["pg1"]
    assert tls.ensure([("pg1", "fd00:0:0::11")], []) == []
    assert tls.ensure([("pg1", "fd00::11")], []) == []


def test_a_certificate_within_renew_days_of_its_end_is_reissued(tls, monkeypatch):
    monkeypatch.setattr(pki, "NODE_DAYS", pki.RENEW_DAYS - 1)  # born inside the renewal window
    tls.ensure(NODES, FRONTEND)
    first = serials(tls)
    assert all(cert_of(tls.node(n).cert).not_valid_after_utc - pki._now()
               < pki.dt.timedelta(days=pki.RENEW_DAYS) for n, _ in NODES)
    assert tls.ensure(NODES, FRONTEND) == ["pg1", "pg2", "pg3"]
    assert not set(serials(tls).values()) & set(first.values())
    # The control: one day outside the window, the same certificates are left alone.
    monkeypatch.setattr(pki, "NODE_DAYS", pki.RENEW_DAYS + 1)
    assert tls.ensure(NODES, FRONTEND) == ["pg1", "pg2", "pg3"]
    assert tls.ensure(NODES, FRONTEND) == []


def test_rotation_trusts_both_cas_until_it_ends(tls, tmp_path):
    tls.ensure(NODES, FRONTEND)
    old_ca = cert_of(tls.ca_cert)
    old_cert = tmp_path / "old-pg1.crt"
    old_cert.write_bytes(tls.node("pg1").cert.read_bytes())
    old_serials = serials(tls)

    tls.begin_rotation()
    new_ca = cert_of(tls.ca_cert)
    assert new_ca.subject != old_ca.subject and new_ca.public_key() != old_ca.public_key()
    assert tls.trusted() == [new_ca, old_ca]  # the new CA first
    # Not yet re-issued: every node still serves an old-CA certificate, trusted through trust.crt ...
    assert openssl_verify(tls.trust, old_cert).returncode == 0
    # ... and only through its old CA (the control: the new CA alone does not vouch for it).
    assert openssl_verify(tls.ca_cert, old_cert).returncode != 0

    assert tls.ensure(NODES, FRONTEND) == ["pg1", "pg2", "pg3"]
    assert not set(serials(tls).values()) & set(old_serials.values())
    for name, _ in NODES:
        assert cert_of(tls.node(name).cert).issuer == new_ca.subject
        assert openssl_verify(tls.trust, tls.node(name).cert).returncode == 0
    assert openssl_verify(tls.trust, old_cert).returncode == 0  # a node not yet reloaded still verifies
    assert tls.ensure(NODES, FRONTEND) == []

    tls.end_rotation()
    assert tls.trusted() == [new_ca]
    refused = openssl_verify(tls.trust, old_cert)
    assert refused.returncode != 0 and "unable to get local issuer certificate" in refused.stdout + refused.stderr
    assert all(openssl_verify(tls.trust, tls.node(n).cert).returncode == 0 for n, _ in NODES)
    assert tls.ensure(NODES, FRONTEND) == []


def test_rotating_is_true_from_begin_to_end_of_a_rotation_only(tls):
    tls.ensure(NODES, FRONTEND)
    assert not tls.rotating
    tls.begin_rotation()
    assert tls.rotating and len(tls.trusted()) == 2
    tls.ensure(NODES, FRONTEND)  # re-issuing the node certificates does not end it
    assert tls.rotating
    tls.end_rotation()
    assert not tls.rotating and tls.trusted() == [cert_of(tls.ca_cert)]


def test_a_node_certificate_serves_and_authenticates_with_addresses_as_addresses(tls):
    tls.ensure(NODES, FRONTEND)
    cert = cert_of(tls.node("pg1").cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips, dns = san.get_values_for_type(x509.IPAddress), san.get_values_for_type(x509.DNSName)
    assert ips == [ipaddress.ip_address(a) for a in ("10.0.0.11", "10.0.1.4", "127.0.0.1")]
    assert dns == ["pg1", "pgha.example.net", "localhost"]
    assert not {"10.0.0.11", "10.0.1.4", "127.0.0.1"} & set(dns)  # an address is never a DNS name
    # What a TLS tls reads: openssl sees IP Address entries, and verifies the address as one.
    text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName,extendedKeyUsage",
                           "-in", str(tls.node("pg1").cert)], capture_output=True, text=True, check=True).stdout
    assert "IP Address:10.0.0.11" in text and "DNS:10.0.0.11" not in text
    assert "TLS Web Server Authentication" in text and "TLS Web Client Authentication" in text
    for ip, ok in (("10.0.0.11", True), ("10.0.0.12", False)):
        out = subprocess.run(["openssl", "verify", "-CAfile", str(tls.trust), "-verify_ip", ip, "-purpose",
                              "sslserver", str(tls.node("pg1").cert)], capture_output=True, text=True)
        assert (out.returncode == 0) is ok, (ip, out.stdout, out.stderr)


def test_fingerprint_material_is_the_public_half_only(tls):
    assert tls.fingerprint_material() == b""
    tls.ensure(NODES, FRONTEND)
    material = tls.fingerprint_material()
    keys = [tls.ca_key, *(tls.node(n).key for n, _ in NODES)]
    assert all(b"PRIVATE KEY" in k.read_bytes() for k in keys)  # the control: the keys are there to leak
    assert b"PRIVATE KEY" not in material
    # Nothing but certificates in it, and no private scalar in any of them.
    certs = x509.load_pem_x509_certificates(material)
    assert b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs) == material
    der = b"".join(c.public_bytes(serialization.Encoding.DER) for c in certs)
    for key in keys:
        secret = serialization.load_pem_private_key(key.read_bytes(), None).private_numbers().private_value
        assert secret.to_bytes(32, "big") not in der + material
    assert tls.trust.read_bytes() in material
    assert all(tls.node(n).cert.read_bytes() in material for n, _ in NODES)
    assert tls.fingerprint_material() == material  # stable while nothing changes
    tls.begin_rotation()
    assert tls.fingerprint_material() != material  # what configure ships changed: it must run
