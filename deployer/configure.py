"""Stage 2: the Ansible roles, run through ansible-runner, with progress and a changed count.

The private data dir lives in the stack's state dir (mode 0700); passwords go in as extravars and
the roles mark every task that handles them ``no_log``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import ansible_runner

from deployer.inventory import render_extravars, render_inventory, repository_vars
from deployer.paths import ANSIBLE_DIR
from deployer.secrets import Secrets
from deployer.targets.base import Target, TargetError

log = logging.getLogger("deployer.configure")


def run_playbook(target: Target, secrets: Secrets, progress: Callable[[str], None] = log.info,
                 playbook: str = "site.yml") -> dict:
    """Run ``playbook`` against the target's hosts; returns ``{"changed": n, "ok": n, "hosts": {...}}``.

    Raises TargetError naming the failed hosts and tasks when the play fails.
    """
    private = target.state.dir / "ansible"
    shutil.rmtree(private / "artifacts", ignore_errors=True)
    private.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(private, 0o700)
    failures: list[str] = []

    def on_event(event: dict) -> bool:
        data = event.get("event_data", {})
        if event.get("event") == "playbook_on_task_start":
            progress(f"{data.get('role', '-')}: {data.get('task', '')}")
        elif event.get("event") in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            result = data.get("res", {})
            failures.append(f"{data.get('host')}: {data.get('task')}: "
                            f"{result.get('msg') or result.get('stderr') or 'failed'}".strip()[:500])
        return True

    repo = target.backup_repository() if target.spec.backup.enabled else None
    inventory = render_inventory(target.spec, target.hosts(), {**target.ansible_vars(), **repository_vars(repo)},
                                 tls_source=target.pki.dir)
    runner = ansible_runner.run(
        private_data_dir=str(private), project_dir=str(ANSIBLE_DIR), playbook=playbook,
        inventory=inventory, extravars=render_extravars(secrets, repo), quiet=True, event_handler=on_event,
        envvars={"ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
                 # ansible-playbook lives beside this interpreter (the venv), maybe not on PATH
                 "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
        rotate_artifacts=3,
    )
    extravars = private / "env" / "extravars"
    if extravars.exists():
        extravars.unlink()  # the passwords stay in secrets.json only
    stats = runner.stats or {}
    if runner.rc != 0 or runner.status != "successful":
        detail = "; ".join(failures) or f"ansible-runner status {runner.status}, rc {runner.rc}"
        raise TargetError(f"Ansible failed: {detail} (artifacts in {private / 'artifacts'})")
    changed = {h: n for h, n in stats.get("changed", {}).items()}
    return {"changed": sum(changed.values()), "changed_by_host": changed,
            "ok": sum(stats.get("ok", {}).values())}
