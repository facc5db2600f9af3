"""TLS on Azure (issue 17, item 7): the names a client verifies, as ARM reports them, in every node
certificate; and the stack's CA carried between the pipeline's stages like the other secrets."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from azure_fakes import load
from cryptography import x509

from deployer.paths import REPO
from deployer.pki import san_names
from deployer.targets.base import TargetError

#: The frontend's DNS name as the deployment's outputs report it (``deployment_succeeded.json``).
FQDN = "pgha-5f3tcbt2lzcbk.westeurope.cloudapp.azure.com"
TEMPLATES = REPO / ".azure-pipelines"


def test_tls_names_are_the_frontend_address_and_dns_name_arm_reported(deployed):
    outputs = load("deployment_succeeded.json")["properties"]["outputs"]
    assert (outputs["frontendIp"]["value"], outputs["frontendFqdn"]["value"]) == ("20.1.2.3", FQDN)
    assert deployed.tls_names() == ["20.1.2.3", FQDN]


def test_every_node_certificate_names_the_frontend_both_ways(deployed, state):
    """Behind the load balancer's TCP passthrough the node's PostgreSQL answers the handshake: a
    client with sslmode=verify-full, whichever frontend name it dialled, must find it in the
    certificate of whichever node answers."""
    assert deployed.ensure_certificates() == ["pg1", "pg2", "pg3"]
    for node in deployed.spec.nodes:
        cert = x509.load_pem_x509_certificate(deployed.pki.node(node.name).cert.read_bytes())
        assert {"20.1.2.3", FQDN, node.name, str(node.address), "127.0.0.1"} <= set(san_names(cert)), node.name
        assert deployed.pki.node(node.name).key.stat().st_mode & 0o777 == 0o600
    assert deployed.ca_file == str(state.dir / "tls" / "trust.crt")
    assert deployed.ensure_certificates() == [], "the same names: nothing re-issued"


def test_a_stack_deployed_before_the_dns_name_says_how_to_get_it(deployed, state):
    del state.data["outputs"]["frontendFqdn"]
    with pytest.raises(TargetError, match=r"no frontendFqdn in its deployment outputs .*--force provision"):
        deployed.tls_names()


# ----- the pipeline carries the CA between stages, encrypted, as the SSH key and the passwords -----

def _step(template: str, name: str) -> tuple[str, dict]:
    """(script, env) of the step ``name`` of a step template, its ``${{ parameters.x }}`` at their defaults."""
    raw = yaml.safe_load((TEMPLATES / template).read_text())
    defaults = {p["name"]: p.get("default") for p in raw.get("parameters", [])}
    step = next(s for s in raw["steps"] if s.get("displayName") == name)
    text = re.sub(r"\$\{\{\s*parameters\.(\w+)\s*\}\}", lambda m: str(defaults[m[1]]), step["bash"])
    return text, step["env"]


def _run(template: str, name: str, macros: dict[str, str], env: dict[str, str]) -> subprocess.CompletedProcess:
    text, step_env = _step(template, name)
    fill = lambda s: re.sub(r"\$\(([\w.-]+)\)", lambda m: macros[m[1]], s)  # noqa: E731
    return subprocess.run(["bash", "-c", fill(text)], capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", **{k: fill(v) for k, v in step_env.items()}, **env})


def test_the_pipeline_carries_the_stack_ca_between_stages_encrypted_and_private(deployed, state, tmp_path_factory):
    """The state directory travels from stage to stage as one encrypted artifact (save-state.yml,
    restore-state.yml): the CA key and the node keys come back byte for byte, still 0600 in a 0700
    directory, and neither step prints anything of them."""
    deployed.ensure_certificates()
    tls = state.dir / "tls"
    keys = sorted(p.relative_to(tls) for p in tls.rglob("*.key"))
    assert keys == [Path("ca.key"), *(Path("nodes") / f"pg{i}.key" for i in (1, 2, 3))]
    passphrase = "not-a-real-state-key"
    agent = tmp_path_factory.mktemp("agent")  # beside the state root, never inside the tree it archives
    macros = {"Build.ArtifactStagingDirectory": str(agent / "staging"), "Build.BuildId": "7",
              "Pipeline.Workspace": str(agent / "workspace"), "pgha-state-key": passphrase}

    saved = _run("save-state.yml", "Encrypt the deployer state for the next stages",
                 {**macros, "stateRoot": str(state.dir.parent)}, {})
    assert saved.returncode == 0, saved.stderr
    artifact = (agent / "staging" / "state" / "state.tar.enc").read_bytes()
    assert b"PRIVATE KEY" not in artifact and b"BEGIN" not in artifact
    shutil.copytree(agent / "staging" / "state", agent / "workspace" / "state-7-2-Configure-1")  # publish, download

    restored_root = agent / "next-job-state"
    restored = _run("restore-state.yml", "Restore the deployer state", {**macros, "stateRoot": str(restored_root)}, {})
    assert restored.returncode == 0, restored.stderr
    again = restored_root / state.name / "tls"
    for key in keys:
        assert (again / key).read_bytes() == (tls / key).read_bytes()
        assert (again / key).stat().st_mode & 0o777 == 0o600, key
    assert (again / "trust.crt").read_bytes() == (tls / "trust.crt").read_bytes()
    assert again.stat().st_mode & 0o777 == 0o700
    printed = saved.stdout + saved.stderr + restored.stdout + restored.stderr
    assert "PRIVATE KEY" not in printed and passphrase not in printed and "BEGIN" not in printed
