"""checkov over ``bicep/``, run from its own virtualenv (checkov pins old packages).

Install it once with ``make checkov``, i.e.::

    python3 -m venv .venv-checkov && .venv-checkov/bin/pip install -r requirements-checkov.txt

Without that virtualenv the checkov runs are skipped with that reason; the rule that every skip
carries a written reason is checked regardless.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from deployer.paths import BICEP_DIR as BICEP
from deployer.paths import REPO

VENV = REPO / ".venv-checkov"
CHECKOV = VENV / "bin" / "checkov"
INSTALL = "python3 -m venv .venv-checkov && .venv-checkov/bin/pip install -r requirements-checkov.txt (or `make checkov`)"

needs_checkov = pytest.mark.skipif(not CHECKOV.exists(), reason=f"checkov's own virtualenv is absent: {INSTALL}")

#: ``#checkov:skip=CKV_AZURE_1: reason`` (checkov's syntax), reason required here.
SKIP = re.compile(r"checkov:skip=(?P<id>[A-Z0-9_]+)(?::(?P<reason>.*))?")


def run_checkov(directory: Path) -> dict:
    """checkov's JSON summary and failed checks for one directory of Bicep."""
    proc = subprocess.run([str(CHECKOV), "-d", str(directory), "--framework", "bicep", "--skip-download",
                           "--compact", "--quiet", "-o", "json"],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode in (0, 1), f"checkov crashed ({proc.returncode}): {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout)
    if isinstance(report, list):  # one entry per framework
        (report,) = [r for r in report if r.get("check_type") == "bicep"]
    report.setdefault("results", {})
    report["exit"] = proc.returncode
    return report


@pytest.fixture(scope="module")
def report() -> dict:
    return run_checkov(BICEP)


@needs_checkov
def test_checkov_finds_no_failed_check(report):
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
              for c in report["results"].get("failed_checks", [])]
    assert summary["failed"] == 0 and not failed, "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0 and summary["resource_count"] > 0, summary
    assert report["exit"] == 0


@needs_checkov
def test_checkov_skips_only_what_the_bicep_skips_with_a_reason(report):
    written = {m["id"] for f in BICEP.rglob("*.bicep") for m in SKIP.finditer(f.read_text())}
    skipped = {c["check_id"] for c in report["results"].get("skipped_checks", [])}
    assert skipped <= written, f"skipped without a written skip: {sorted(skipped - written)}"


@needs_checkov
def test_checkov_parses_every_bicep_file():
    """checkov quietly ignores a file its (older) pycep cannot parse: parse each one with it."""
    files = sorted(str(f) for f in BICEP.rglob("*.bicep"))
    script = ("import sys\nfrom pathlib import Path\nfrom pycep import BicepParser\n"
              "p = BicepParser()\nfor f in sys.argv[1:]:\n    p.parse(file_path=Path(f))\n")
    proc = subprocess.run([str(VENV / "bin" / "python"), "-c", script, *files], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"checkov's pycep cannot parse the Bicep:\n{proc.stderr[-2000:]}"


@needs_checkov
def test_checkov_catches_an_insecure_vm(tmp_path):
    """The harness can fail: a VM with password login must produce failed checks."""
    (tmp_path / "bad.bicep").write_text("""
param location string = resourceGroup().location

resource vm 'Microsoft.Compute/virtualMachines@2024-07-01' = {
  name: 'bad'
  location: location
  properties: {
    hardwareProfile: {
      vmSize: 'Standard_B2s'
    }
    osProfile: {
      computerName: 'bad'
      adminUsername: 'azureuser'
      adminPassword: 'Passw0rd-in-clear'
      linuxConfiguration: {
        disablePasswordAuthentication: false
      }
    }
  }
}
""")
    bad = run_checkov(tmp_path)
    failed = {c["check_id"] for c in bad["results"].get("failed_checks", [])}
    assert bad["summary"]["failed"] > 0 and "CKV_AZURE_149" in failed, bad["summary"]


def test_every_checkov_skip_has_a_written_reason():
    for f in BICEP.rglob("*.bicep"):
        for m in SKIP.finditer(f.read_text()):
            reason = (m["reason"] or "").strip()
            assert len(reason) >= 10, f"{f.name}: checkov:skip={m['id']} needs a reason beside it"
