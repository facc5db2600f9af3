"""Probes that prove TLS from a vantage: what a client standing there sees of a server's TLS.

A *vantage* is a command prefix that runs a program where the client stands (``["ip", "netns",
"exec", "client"]``, ``[]`` for this machine), as ``Target.vantage()`` returns it; the probes run
``openssl s_client`` (OpenSSL 3.0) and a Python interpreter under it. A prefix that is an SSH
command line ending in ``--`` (``Stack.on_node``) is a remote vantage: the command is quoted for the
remote shell and runs the node's ``python3``; any other prefix shares this machine's filesystem (a
network namespace does) and runs this interpreter. Everything else here is parsing with
``cryptography`` on this machine.

Every answer names ``host:port`` (and the vantage, when there is one) and what was seen, so a
suite's assertion message can quote it as is. Nothing here prints, logs or returns key material:
s_client's session block (its ``Master-Key``) is read for the protocol and dropped.

- ``handshake``: one TLS handshake at a pinned protocol version; accepted or not, the version, the
  peer's chain and openssl's verdict on it.
- ``plaintext_http`` / ``serves_plain_http``: does a port answer plain HTTP like an application?
- ``name_matches``, ``chain_verifies`` / ``chain_problem``, ``expiry_verdict``: judgements on
  certificates, wherever they came from.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.x509 import verification

from deployer.pki import load_certs

PROTOCOLS = ("tls1", "tls1_1", "tls1_2", "tls1_3")
#: ``expiry_verdict``: below this many days left a certificate warns, below ``FAIL_DAYS`` it fails.
WARN_DAYS = 30
FAIL_DAYS = 7
#: The client's own floor, lowered for the legacy versions: OpenSSL 3.0 at its default security
#: level (1) has no cipher and no signature algorithm for TLS 1.0/1.1, so a client left at it
#: refuses by itself and "the server refused TLS 1.1" would be proven by the client alone.
LEGACY_CIPHERS = "DEFAULT:@SECLEVEL=0"
#: An HTTP status line, as ``plaintext_http`` accepts it.
STATUS_LINE = re.compile(r"^HTTP/\d(?:\.\d)? (\d{3})(?: .*)?$")

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\r?\n", re.S)
_SESSION = re.compile(r"^(?:New|Reused), (\S+), Cipher is (\S+)", re.M)
_PROTOCOL = re.compile(r"^\s+Protocol\s*:\s*(\S+)", re.M)
_VERIFY = re.compile(r"^\s*Verify return code: (\d+) \((.*)\)", re.M)
# An OpenSSL error line: "<thread>:error:<code>:<library>:<function>:<reason>:<file>:<line>:<extra>".
_ERROR = re.compile(r"^[0-9A-F]+:error:[0-9A-F]+:[^:]*:[^:]*:([^:]+):[^:]*:\d+:(.*)$", re.M)

_HTTP_GET = """
import socket, sys
host, port, path, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
got = b""
try:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n".encode())
        while b"\\n" not in got and len(got) < 4096 and (chunk := s.recv(4096)):
            got += chunk
except OSError:
    pass
sys.stdout.write(got.split(b"\\n")[0].decode("latin-1"))
"""


@dataclass(frozen=True)
class Handshake:
    """What one ``handshake`` saw.

    ``accepted``: a TLS session was established (a cipher was negotiated), whatever the verdict on
    the certificate. ``protocol``: the negotiated version as openssl names it (``"TLSv1.3"``), None
    unless accepted. ``chain``: the peer's certificates as it sent them, leaf first (possibly sent
    before a refusal). ``verified``: openssl's verdict on that chain against ``ca_file`` (True only
    for ``Verify return code: 0 (ok)``); None when no ``ca_file`` was given or no session was
    established. ``detail``: ``host:port[ via PREFIX]: what happened`` in one short line (openssl's
    reason for a refusal, or the version, cipher and verify result), quotable in an assertion.
    """

    accepted: bool
    protocol: str | None
    chain: list[x509.Certificate] = field(repr=False)
    verified: bool | None
    detail: str

    def __str__(self) -> str:
        return self.detail


def _remote(prefix: list[str]) -> bool:
    return bool(prefix) and prefix[0] == "ssh" and prefix[-1] == "--"


def _argv(prefix: list[str], command: list[str]) -> list[str]:
    """``command`` run at the vantage ``prefix`` (quoted for the remote shell behind SSH)."""
    return [*prefix, shlex.join(command)] if _remote(prefix) else [*prefix, *command]


def _where(prefix: list[str], host: str, port: int) -> str:
    vantage = f"ssh {prefix[-2]}" if _remote(prefix) else " ".join(prefix)
    return f"{host}:{port}" + (f" via {vantage}" if prefix else "")


def handshake(prefix: list[str], host: str, port: int, *, protocol: str = "tls1_2", starttls: str | None = None,
              ca_file: Path | None = None, timeout: float = 5) -> Handshake:
    """One TLS handshake to ``host:port`` from the vantage ``prefix``, offering ``protocol`` only
    (one of ``PROTOCOLS``: openssl's ``-tls1`` ... ``-tls1_3`` pin both the floor and the ceiling,
    overriding any ``MinProtocol`` of the system's openssl.cnf).

    For ``tls1``/``tls1_1`` the client's security level is lowered (``LEGACY_CIPHERS``) so that the
    client really offers the version and a refusal is the server's; ``tests/test_tls_probe.py``
    shows such a handshake accepted by a server that allows it. ``starttls="postgres"`` sends
    PostgreSQL's SSLRequest first (``-starttls postgres``); a server that declines it (``N``) is not
    accepted, with a detail saying so. ``ca_file``: verify the chain against it (``-CAfile``); the
    verdict is read, never enforced (the handshake goes on whatever it is). The server's name is
    not checked here: see ``name_matches``.

    Never raises for what the server does: a closed port, a reset, a refusal or no answer within
    ``timeout`` seconds is ``accepted=False`` with the reason in ``detail``. Raises ``ValueError``
    for an unknown ``protocol`` or ``starttls``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is none of {PROTOCOLS}")
    if starttls not in (None, "postgres"):
        raise ValueError(f"starttls {starttls!r} is not supported (only 'postgres')")
    where = _where(prefix, host, port)
    command = ["openssl", "s_client", "-connect", f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
               "-showcerts", "-no_ign_eof", f"-{protocol}"]
    command += ["-cipher", LEGACY_CIPHERS] if protocol in ("tls1", "tls1_1") else []
    command += ["-starttls", starttls] if starttls else []
    command += ["-CAfile", str(ca_file)] if ca_file else []
    argv = _argv(prefix, command)
    try:
        out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Handshake(False, None, [], None, f"{where}: no TLS answer within {timeout:g}s ({protocol} offered)")
    text, err = out.stdout.decode(errors="replace"), out.stderr.decode(errors="replace")
    chain = [x509.load_pem_x509_certificate(pem) for pem in _PEM.findall(out.stdout)]
    session = _SESSION.search(text)
    if not session or session[2] == "(NONE)":
        if error := _ERROR.search(err):
            reason = error[1] + (f" ({error[2]})" if error[2] else "")
        elif starttls and "CONNECTED" in text:
            reason = f"the server refused SSL: no 'S' to the {starttls} SSLRequest"
        else:
            reason = (err.strip().splitlines() or [f"openssl exited {out.returncode}"])[-1]
        seen = f"{protocol} refused" if "CONNECTED" in text else "no connection"
        return Handshake(False, None, chain, None, f"{where}: {seen}: {reason}")
    # TLS 1.3 exits before any session ticket, so no session block: its cipher names the version;
    # below 1.3 the cipher's version is where it was introduced, the session block has the real one.
    version = session[1] if session[1] == "TLSv1.3" else (m[1] if (m := _PROTOCOL.search(text)) else session[1])
    verify = _VERIFY.search(text)
    verified = None if not ca_file else bool(verify and verify[1] == "0")
    seen = f", verify {verify[1]} ({verify[2]})" if ca_file and verify else ""
    return Handshake(True, version, chain, verified, f"{where}: {version} accepted, {session[2]}{seen}")


def plaintext_http(prefix: list[str], host: str, port: int, path: str = "/", timeout: float = 5) -> str | None:
    """Send ``GET path HTTP/1.0`` in plain text to ``host:port`` from the vantage ``prefix``; the
    status line that came back (``"HTTP/1.0 200 OK"``), or None when no HTTP answer did: refused,
    reset, closed without a word, no line within ``timeout`` seconds, or bytes that are no status
    line (a TLS alert, as OpenSSL's and Python's TLS servers send or just close).

    A status line is not yet a service: whether it counts as serving plain HTTP is
    ``serves_plain_http``'s call.
    """
    python = "python3" if _remote(prefix) else sys.executable
    argv = _argv(prefix, [python, "-c", _HTTP_GET, host, str(port), path, str(timeout)])
    try:
        out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                             timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        return None
    line = out.stdout.strip()
    return line if STATUS_LINE.match(line) else None


def serves_plain_http(status_line: str | None) -> bool:
    """Does ``plaintext_http``'s answer show the application serving plain HTTP? Yes for what an
    application answers to a request it read: 1xx-3xx, 401, 403, 404, 405 and every 5xx (Patroni's
    503 for a replica included). No for no answer, and for a 4xx that is the server declining the
    plain request itself: 400 (nginx's "plain HTTP request was sent to HTTPS port", a TLS stack
    reading our bytes as garbage), 426 Upgrade Required, 497, and the other 4xx."""
    if status_line is None or not (m := STATUS_LINE.match(status_line)):
        return False
    code = int(m[1])
    return code < 400 or code in (401, 403, 404, 405) or code >= 500


def name_matches(cert: x509.Certificate, name: str) -> bool:
    """Is ``name`` one of ``cert``'s subject alternative names? An address matches an IP SAN only
    (equal as addresses: ``::1`` is ``0:0::1``), never a DNS SAN spelling it; a DNS name matches a
    DNS SAN case-insensitively (a trailing dot ignored; ``*.`` covers exactly one leftmost label).
    No SAN, no match: the subject's CN is never consulted (as RFC 6125 and libpq's verify-full
    with SANs present)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        return ipaddress.ip_address(name) in san.get_values_for_type(x509.IPAddress)
    except ValueError:
        pass
    want = name.rstrip(".").lower()
    for dns in (d.rstrip(".").lower() for d in san.get_values_for_type(x509.DNSName)):
        if dns == want or (dns.startswith("*.") and want.partition(".")[2] == dns[2:] and "." in dns[2:]):
            return True
    return False


def chain_problem(chain: list[x509.Certificate], ca_file: Path, name: str | None = None,
                  now: dt.datetime | None = None) -> str | None:
    """Why ``chain`` (leaf first, then untrusted intermediates) does not verify against the CAs in
    ``ca_file`` (a PEM bundle: every one trusted) at ``now``, or None when it does. Web PKI rules
    (``cryptography.x509.verification``): signatures, validity dates, CA constraints, the
    ``serverAuth`` EKU. With ``name`` (an address or a DNS name) the leaf must also be issued for
    it; without, its own first SAN stands in, so only the chain is judged (names: ``name_matches``)."""
    if not chain:
        return "no certificate to verify"
    leaf = chain[0]
    if name is None:
        try:
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            name = str(next(iter(sans)).value)
        except (x509.ExtensionNotFound, StopIteration):
            return f"the leaf ({leaf.subject.rfc4514_string()}) has no subject alternative name"
    try:
        subject: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        subject = x509.DNSName(name)
    builder = verification.PolicyBuilder().store(verification.Store(load_certs(ca_file.read_bytes())))
    builder = builder.time(now or dt.datetime.now(dt.timezone.utc))
    try:
        builder.build_server_verifier(subject).verify(leaf, chain[1:])
    except verification.VerificationError as exc:
        why = re.sub(r" \(encountered processing <.*\)$", "", str(exc))
        return f"{leaf.subject.rfc4514_string()} (issuer {leaf.issuer.rfc4514_string()}) against {ca_file}: {why}"
    return None


def chain_verifies(chain: list[x509.Certificate], ca_file: Path) -> bool:
    """Does ``chain`` verify against ``ca_file``? ``chain_problem`` is None (it says why not)."""
    return chain_problem(chain, ca_file) is None


def expiry_verdict(cert: x509.Certificate, now: dt.datetime | None = None) -> tuple[str, float]:
    """``("ok" | "warn" | "fail", days left)`` for ``cert`` at ``now``: "fail" below ``FAIL_DAYS``
    (an expired one: negative days), "warn" below ``WARN_DAYS``, else "ok"."""
    days = (cert.not_valid_after_utc - (now or dt.datetime.now(dt.timezone.utc))).total_seconds() / 86400
    return ("fail" if days < FAIL_DAYS else "warn" if days < WARN_DAYS else "ok"), days
