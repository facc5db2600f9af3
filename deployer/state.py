"""The stack's state on the control machine: stages run, their outcome, and what targets recorded.

One directory per stack name under ``STATE_ROOT`` (outside the checkout), holding ``state.json``,
the generated secrets and SSH key (mode 0600), and whatever the target keeps there (overlays,
logs). The state survives a crash of the deployer, so ``up`` resumes and ``down`` finds everything.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel, Field

STATE_ROOT = Path(os.environ.get("PGHA_STATE_ROOT", "/var/lib/pgha"))
STAGES = ("provision", "configure", "attach", "verify")


class StageRecord(BaseModel):
    """One stage's last run: outcome, duration, when, and why it failed."""

    ok: bool
    seconds: float
    finished_at: float
    error: str | None = None
    #: Load balancer members read back from the load balancer right after the stage.
    lb_members: list[dict] = []
    #: Anything the stage wants on record (e.g. Ansible's changed count).
    facts: dict = {}
    #: Hash of what the stage was run from (``deployer.stages.fingerprint``); None when recorded by a
    #: deployer that kept none, which never counts as still valid.
    fingerprint: str | None = None
    #: The spec the stage ran from (``StackSpec.model_dump(mode="json")``): what the platform was
    #: converged to, which day two's plan compares the next spec with (``deployer.plan``).
    spec: dict | None = None


class StackState(BaseModel):
    name: str
    target: str
    spec_path: str
    stages: dict[str, StageRecord] = {}
    #: Target-owned data (pids, resource ids), opaque to everyone else.
    data: dict = Field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return STATE_ROOT / self.name

    @staticmethod
    def path_for(name: str) -> Path:
        return STATE_ROOT / name / "state.json"

    @classmethod
    def load(cls, name: str) -> StackState | None:
        """The saved state of stack ``name``, or None when there is none."""
        path = cls.path_for(name)
        if not path.exists():
            return None
        return cls.model_validate_json(path.read_text())

    def save(self) -> None:
        """Write atomically, so a crash never leaves half a state file."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(self.dir / "state.json")

    def record(self, stage: str, ok: bool, seconds: float, error: str | None = None,
               lb_members: list[dict] | None = None, facts: dict | None = None,
               fingerprint: str | None = None, spec: dict | None = None) -> None:
        self.stages[stage] = StageRecord(ok=ok, seconds=round(seconds, 2), finished_at=time.time(),
                                         error=error, lb_members=lb_members or [], facts=facts or {},
                                         fingerprint=fingerprint, spec=spec)
        self.save()

    def done(self, stage: str) -> bool:
        """True when ``stage`` last succeeded and every stage before it did too."""
        for name in STAGES[: STAGES.index(stage) + 1]:
            rec = self.stages.get(name)
            if not rec or not rec.ok:
                return False
        return True

    def summary(self) -> dict:
        return {stage: {"ok": rec.ok, "seconds": rec.seconds} for stage, rec in self.stages.items()}


def write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the start (never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
