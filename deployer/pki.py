"""The stack's certificate authority and the certificates it signs (Python's ``cryptography``).

Kept in ``<state dir>/tls/`` (directory 0700, private keys 0600; never printed or logged):

- ``ca.crt`` / ``ca.key``: the current CA (ECDSA P-256, ``CA_DAYS``);
- ``trust.crt``: every CA the stack trusts, the current one first: what every node and every client
  verifies against (its ``ca.crt`` on a node). During ``rotate-certs`` it holds the old CA too, until
  every node serves a certificate of the new one (``begin_rotation``, then ``end_rotation``);
- ``nodes/<name>.crt`` / ``.key``: one certificate per node (``NODE_DAYS``) for both ends of TLS:
  server (PostgreSQL, Patroni's REST API, etcd's client and peer ports) and client (etcd's peers,
  Patroni to etcd, replication). Its names: the node's name and address, the load balancer
  frontend's names (clients verify the node that answers behind the TCP passthrough), and loopback
  (a node's own calls, and the Azure target's SSH tunnels to a node's API).

``ensure`` is idempotent: it creates what is missing and re-issues a node certificate whose names
differ, whose issuer is not the current CA, or that expires within ``RENEW_DAYS``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deployer.state import write_private

CA_DAYS = 3650
NODE_DAYS = 397
#: A node certificate closer than this to its end is re-issued by the next ``ensure``.
RENEW_DAYS = 30
LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class NodeCert:
    """Where one node's certificate and key are on the control machine."""

    name: str
    cert: Path
    key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def general_names(names: list[str]) -> list[x509.GeneralName]:
    """Subject alternative names: an IP address as such, anything else as a DNS name."""
    out: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def san_names(cert: x509.Certificate) -> list[str]:
    """A certificate's subject alternative names as strings (addresses and DNS names)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in ext.get_values_for_type(x509.IPAddress)] + ext.get_values_for_type(x509.DNSName)


def load_certs(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, in order."""
    return x509.load_pem_x509_certificates(pem)


class StackPKI:
    """The CA and node certificates of one stack, under ``<state dir>/tls``."""

    def __init__(self, state_dir: Path, stack_name: str):
        self.dir = state_dir / "tls"
        self.stack_name = stack_name
        self.ca_cert, self.ca_key = self.dir / "ca.crt", self.dir / "ca.key"
        self.trust = self.dir / "trust.crt"

    def node(self, name: str) -> NodeCert:
        """Paths of node ``name``'s certificate and key (whether issued yet or not)."""
        return NodeCert(name, self.dir / "nodes" / f"{name}.crt", self.dir / "nodes" / f"{name}.key")

    # ----- the CA -----

    def _new_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now, serial = _now(), x509.random_serial_number()
        # Each CA's own name (the serial in it): the old and the new CA of a rotation never share one.
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pgha"),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"pgha {self.stack_name} CA {serial:x}"[:64])])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        write_private(self.ca_key, _key_pem(key))
        self.ca_cert.write_text(_cert_pem(cert))

    def _ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        return cert, key  # type: ignore[return-value]

    def trusted(self) -> list[x509.Certificate]:
        """The CAs in ``trust.crt``, the current one first."""
        return load_certs(self.trust.read_bytes()) if self.trust.exists() else []

    def _write_trust(self, cas: list[x509.Certificate]) -> None:
        self.trust.write_text("".join(dict.fromkeys(_cert_pem(c) for c in cas)))

    # ----- node certificates -----

    def _issue(self, node: NodeCert, names: list[str]) -> None:
        ca, ca_key = self._ca()
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pgha"),
                                         x509.NameAttribute(NameOID.COMMON_NAME, node.name)]))
                .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=NODE_DAYS))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName(general_names(names)), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        node.cert.parent.mkdir(mode=0o700, exist_ok=True)
        write_private(node.key, _key_pem(key))
        node.cert.write_text(_cert_pem(cert))

    def _needs_issue(self, node: NodeCert, names: list[str]) -> bool:
        if not (node.cert.exists() and node.key.exists()):
            return True
        cert = x509.load_pem_x509_certificate(node.cert.read_bytes())
        try:
            cert.verify_directly_issued_by(self._ca()[0])
        except (ValueError, TypeError, InvalidSignature):
            return True
        # Compared as the certificate spells them: an IPv6 address in its canonical form.
        return (sorted(san_names(cert)) != sorted(str(n.value) for n in general_names(names))
                or cert.not_valid_after_utc - _now() < dt.timedelta(days=RENEW_DAYS))

    @staticmethod
    def names_for(node_name: str, address: str, frontend_names: list[str]) -> list[str]:
        """The subject alternative names of a node's certificate, in order."""
        return list(dict.fromkeys([node_name, address, *frontend_names, *LOOPBACK]))

    def _ensure_ca(self) -> None:
        """The CA, created if missing, first in ``trust.crt``."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not (self.ca_cert.exists() and self.ca_key.exists()):
            self._new_ca()
        ca, _ = self._ca()
        if not self.trusted() or self.trusted()[0].fingerprint(hashes.SHA256()) != ca.fingerprint(hashes.SHA256()):
            self._write_trust([ca, *self.trusted()])

    def ensure(self, nodes: list[tuple[str, str]], frontend_names: list[str]) -> list[str]:
        """Create the CA and every node's certificate (``nodes``: ``(name, address)``) where missing
        or outdated (see the module docstring); the names of the nodes issued a certificate."""
        self._ensure_ca()
        issued = []
        for name, address in nodes:
            names = self.names_for(name, address, frontend_names)
            if self._needs_issue(self.node(name), names):
                self._issue(self.node(name), names)
                issued.append(name)
        return issued

    # ----- service certificates -----

    def service(self, name: str) -> NodeCert:
        """Paths of the certificate and key of service ``name``: an endpoint of the stack that is
        no node (the local target's blob endpoint), served by the control machine's side."""
        return NodeCert(name, self.dir / "services" / f"{name}.crt", self.dir / "services" / f"{name}.key")

    def ensure_service(self, name: str, names: list[str]) -> bool:
        """Issue service ``name``'s certificate for ``names`` from the current CA where missing or
        outdated (as ``ensure`` does for nodes; a rotation's new CA re-issues it); True if issued."""
        self._ensure_ca()
        cert = self.service(name)
        if not self._needs_issue(cert, names):
            return False
        self._issue(cert, names)
        return True

    # ----- rotation -----

    @property
    def rotating(self) -> bool:
        """A rotation has begun and not ended: ``trust.crt`` holds another CA besides the current one."""
        return len(self.trusted()) > 1

    def begin_rotation(self) -> None:
        """A new CA becomes current; the old one stays in ``trust.crt`` (listed after the new one)
        until ``end_rotation``. The next ``ensure`` re-issues every node's certificate from it."""
        old = self.trusted()
        self._new_ca()
        self._write_trust([self._ca()[0], *old])

    def end_rotation(self) -> None:
        """Trust the current CA only (every node serves a certificate of it by now)."""
        self._write_trust([self._ca()[0]])

    def fingerprint_material(self) -> bytes:
        """The public half of the PKI (trust bundle and node certificates): what configure ships,
        for its stage fingerprint. Private keys never enter it."""
        files = [self.trust, *sorted((self.dir / "nodes").glob("*.crt"))] if self.dir.exists() else []
        return b"".join(f.read_bytes() for f in files if f.exists())
