"""The leak scan of ``deployer.leaks`` finds each kind of secret it looks for (negative controls
planted in files) and nothing in files that hold none."""

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from deployer.leaks import leaks_under, stack_secrets


def pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture
def state(tmp_path):
    state = tmp_path / "state"
    (state / "tls" / "nodes").mkdir(parents=True)
    (state / "secrets.json").write_text(json.dumps({"app": "s3cr3t-app-password-0123456789ab", "superuser": "su-pw-abcdefghijklmnopqrstu"}))
    (state / "id_ed25519").write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
    (state / "tls" / "ca.key").write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    (state / "tls" / "nodes" / "pg1.key").write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    (state / "storage").mkdir()
    (state / "storage" / "account.json").write_text(json.dumps({"account": "pgharepo", "key": "c3RvcmFnZS1rZXk="}))
    return state


def test_the_secrets_are_every_password_and_every_private_key(state):
    assert sorted(stack_secrets(state)) == ["the app password", "the backup repository's key",
                                            "the private key id_ed25519",
                                            "the private key tls/ca.key", "the private key tls/nodes/pg1.key",
                                            "the superuser password"]


def test_clean_reports_hold_no_leak(state, tmp_path):
    reports = tmp_path / "reports"
    (reports / "run" / "logs").mkdir(parents=True)
    (reports / "run" / "report.html").write_text("<p>password=******** sslmode=verify-full</p>")
    (reports / "run" / "logs" / "pg1-patroni.log").write_text("INFO: no action. I am (pg1), the leader with the lock\n")
    assert leaks_under(reports, stack_secrets(state)) == []


@pytest.mark.parametrize("planted, named", [
    (lambda s: f"dsn host=10.0.1.4 password={json.loads((s / 'secrets.json').read_text())['app']}", "the app password"),
    (lambda s: (s / "tls" / "nodes" / "pg1.key").read_text().splitlines()[1], "the private key tls/nodes/pg1.key"),
    (lambda s: "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI...", "a PEM private key"),
    (lambda s: "repo1-azure-key=c3RvcmFnZS1rZXk=", "the backup repository's key"),
    (lambda s: (s / "id_ed25519").read_text(), "the private key id_ed25519"),
])
def test_each_kind_of_leak_is_found_naming_the_file_and_the_secret(state, tmp_path, planted, named):
    reports = tmp_path / "reports"
    (reports / "run" / "logs").mkdir(parents=True)
    (reports / "run" / "logs" / "pg2-journal.log").write_text(f"some line\n{planted(state)}\nmore\n")
    found = leaks_under(reports, stack_secrets(state))
    assert len(found) == 1 and found[0].startswith("run/logs/pg2-journal.log: ") and named in found[0], found
