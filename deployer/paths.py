"""Where the repository's parts live, for every module that needs one (the one place that knows).

Paths inside the checkout are derived from this file's location; the state and the image cache
live outside it (``deployer.state.STATE_ROOT``, ``deployer.targets.local.image``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = REPO / "stack.yaml"
ANSIBLE_DIR = REPO / "ansible"
BICEP_DIR = REPO / "bicep"
SUITES = REPO / "suites"
LOCUSTFILE = REPO / "load" / "locustfile.py"
REPORTS = REPO / "reports"


#: Environment variable naming the current run (set by the suites' controller, inherited by xdist
#: workers and by the deployers a run starts), so every process writes into one ``reports/<run id>/``.
RUN_ENV = "PGHA_RUN_ID"
#: Environment variable naming the directory of one invocation (``make test``, ``make drill``, a
#: pipeline run; relative to the repository or absolute): every run it starts, however many inner
#: pytest runs, writes ``<that directory>/<run id>/`` instead of ``reports/<run id>/``.
INVOCATION_ENV = "PGHA_INVOCATION_DIR"
#: Every run's drill figures, one JSON line per run and drill, kept across invocations.
HISTORY = REPORTS / "history.jsonl"


def runs_dir() -> Path:
    """Where run directories are made: the invocation's directory (``INVOCATION_ENV``), else ``reports/``."""
    return Path(REPO, os.environ[INVOCATION_ENV]) if os.environ.get(INVOCATION_ENV) else REPORTS


def run_reports() -> Path:
    """``<runs_dir()>/<run id>/`` of this run (a new id when none is set), created on demand: JUnit XML,
    the HTML page, drill records and histories, log bundles of failed tests."""
    run_id = os.environ.setdefault(RUN_ENV, f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    path = runs_dir() / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def in_suites(args: list[str], cwd: Path) -> bool:
    """True when pytest arguments (paths or node ids, relative to ``cwd``) select from ``suites/``."""
    paths = (Path(cwd, arg.split("::")[0]).resolve() for arg in args)
    return any(p == SUITES or SUITES in p.parents for p in paths)


def point_latest(run_dir: Path) -> None:
    """Make ``reports/latest`` point at the invocation's directory when ``INVOCATION_ENV`` names one,
    else at ``run_dir``."""
    REPORTS.mkdir(exist_ok=True)
    latest = REPORTS / "latest"
    latest.unlink(missing_ok=True)
    latest.symlink_to(os.path.relpath(runs_dir() if os.environ.get(INVOCATION_ENV) else run_dir, REPORTS))
