"""Where the repository's parts live, for every module that needs one (the one place that knows).

Paths inside the checkout are derived from this file's location; the state and the image cache
live outside it (``deployer.state.STATE_ROOT``, ``deployer.targets.local.image``).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = REPO / "stack.yaml"
ANSIBLE_DIR = REPO / "ansible"
BICEP_DIR = REPO / "bicep"
SUITES = REPO / "suites"
LOCUSTFILE = REPO / "load" / "locustfile.py"
REPORTS = REPO / "reports"


def reports_for(stack: str) -> Path:
    """``reports/<stack>/``: JUnit XML, drill results, log bundles of one stack (created on demand)."""
    path = REPORTS / stack
    path.mkdir(parents=True, exist_ok=True)
    return path
