"""The wheelhouse a local VM installs Patroni from: the VMs reach no package index, and a recorded
stack keeps the image it was deployed with, so a Patroni release other than the image's (the spec's
``patroni.version`` changed) reaches them as wheels built on the host for the image's Python. The
patroni role copies it and installs from it alone (``patroni_wheelhouse``) when the release its node
runs differs from the spec's. One directory per set of requirements, built once and kept."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from filelock import FileLock

from deployer.targets.base import MissingPrerequisite, TargetError

#: The image's Python (Debian 12's): the wheels are built for it.
IMAGE_PYTHON = (3, 11)
ROOT = Path("/var/cache/pgha/wheels")


def image_python() -> str:
    """A host Python of the image's version (:data:`IMAGE_PYTHON`) with pip: it builds the wheels the
    image's Patroni venv installs. MissingPrerequisite when there is none."""
    python = next((c for c in (sys.executable, shutil.which("python3.11"), shutil.which("python3")) if c and
                   subprocess.run([c, "-c", f"import sys, pip; sys.exit(sys.version_info[:2] != {IMAGE_PYTHON})"],
                                  capture_output=True).returncode == 0), None)
    if python is None:
        raise MissingPrerequisite("no Python {}.{} with pip on the host: the image's wheels are built "
                                  "with the host's pip for the image's Python".format(*IMAGE_PYTHON))
    return python


def wheelhouse(requirements: Iterable[str], root: Path = ROOT) -> Path:
    """``<root>/<key>/``: wheels of ``requirements`` and every dependency (``pip wheel``, sdists
    built into wheels: python-etcd is an sdist only), with a ``READY`` file listing the
    requirements; built under a lock when missing, at once when there. The image's bake installs
    from it too. TargetError with pip's tail when it cannot be built."""
    reqs = sorted({r.strip() for r in requirements if r.strip()})
    final = root / hashlib.sha256(json.dumps(reqs).encode()).hexdigest()[:16]
    if (final / "READY").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{final.name}.lock")):
        if (final / "READY").is_file():
            return final
        work = root / f".{final.name}.work"
        shutil.rmtree(work, ignore_errors=True)
        proc = subprocess.run([image_python(), "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input",
                               "--wheel-dir", str(work), *reqs], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            raise TargetError(f"could not build the wheels of {', '.join(reqs)}: {proc.stderr.strip()[-800:]}")
        (work / "READY").write_text(json.dumps(reqs) + "\n")
        work.rename(final)
    return final
