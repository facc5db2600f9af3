"""The staged deployer: provision -> configure -> attach -> verify, recorded, resumable.

Each stage records its outcome, duration and the load balancer's members as read back from the
load balancer right after it. ``up`` resumes: when provision already succeeded and the target says
its infrastructure is running, it is kept; configure, attach and verify always run again (they
converge). A stack whose previous run died is torn down by the target before it provisions again.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
import sys
import time
from typing import Callable

from deployer.configure import run_playbook
from deployer.paths import REPO, SUITES, run_reports
from deployer.secrets import Secrets
from deployer.spec import StackSpec, check_for_target
from deployer.state import STAGES, StackState
from deployer.targets import Target, TargetError, get

log = logging.getLogger("deployer")


def open_stack(name: str, target_name: str, spec: StackSpec, spec_path: Path) -> tuple[StackState, Target]:
    """Load or create the state of ``name`` and its target; refuses to switch a stack's target and
    a spec whose target-only fields that target refuses."""
    check_for_target(spec, target_name)
    state = StackState.load(name)
    if state is None:
        state = StackState(name=name, target=target_name, spec_path=str(spec_path.resolve()))
    elif state.target != target_name:
        raise TargetError(f"stack {name!r} was deployed on target {state.target!r}; `deployer down --name {name}` first")
    state.spec_path = str(spec_path.resolve())
    return state, get(target_name)(spec, state)


def _members(target: Target) -> list[dict]:
    try:
        return [dataclasses.asdict(m) for m in target.backend_pool()]
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal: the stage outcome is what matters
        return [{"error": str(exc)}]


def run_stage(state: StackState, target: Target, stage: str, work: Callable[[], dict | None]) -> None:
    """Run one stage and record it, also when it fails or is interrupted."""
    log.info("Stage %s: starting.", stage)
    start = time.monotonic()
    try:
        facts = work() or {}
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
        state.record(stage, ok=False, seconds=time.monotonic() - start, error=reason, lb_members=_members(target))
        log.error("Stage %s failed after %.1f s: %s", stage, time.monotonic() - start, reason)
        raise
    members = _members(target)
    state.record(stage, ok=True, seconds=time.monotonic() - start, lb_members=members, facts=facts)
    log.info("Stage %s: done in %.1f s; the load balancer reports %d member(s).", stage, time.monotonic() - start,
             len([m for m in members if "node" in m]))


def up(state: StackState, target: Target, *, from_stage: str | None = None, until: str = "verify",
       progress: Callable[[str], None] = log.info) -> None:
    """Bring the stack to ``until``; ``from_stage`` forces re-running from that stage."""
    target.preflight()
    state.save()
    secrets = Secrets(state.dir)
    last = STAGES.index(until)
    first = STAGES.index(from_stage) if from_stage else 0
    if first == 0 and state.done("provision") and target.is_up():
        log.info("Provision: already done and the infrastructure is running; keeping it.")
        first = 1
    if first > 0 and not state.done(STAGES[first - 1]):
        raise TargetError(f"cannot start at {STAGES[first]}: stage {STAGES[first - 1]} has not succeeded")
    work = {
        "provision": lambda: target.provision(),
        "configure": lambda: _configure(target, secrets, progress),
        "attach": lambda: target.attach(),
        "verify": lambda: verify(state.name),
    }
    for stage in STAGES[first:last + 1]:
        run_stage(state, target, stage, work[stage])


def _configure(target: Target, secrets: Secrets, progress: Callable[[str], None]) -> dict:
    result = run_playbook(target, secrets, progress)
    log.info("Ansible converged: %d task(s) changed (%s).", result["changed"],
             ", ".join(f"{h}: {n}" for h, n in sorted(result["changed_by_host"].items())) or "none")
    return result


def verify(name: str) -> dict:
    """Stage 4: ``pytest -m smoke`` against the stack; its JUnit XML goes to reports/<run id>/smoke.xml."""
    report = run_reports()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "smoke", "-q", "-p", "no:cacheprovider",
                           str(SUITES), f"--stack={name}", "--keep-stack", f"--junitxml={report / 'smoke.xml'}"],
                          cwd=REPO, capture_output=True, text=True)
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    if proc.returncode != 0:
        raise TargetError(f"smoke checks failed: {tail[0]}\n{proc.stdout[-4000:]}")
    log.info("Smoke checks: %s", tail[0])
    return {"smoke": tail[0]}


def down(state: StackState, target: Target) -> list[str]:
    """Tear the stack down, then list what is left (empty = clean); the state dir goes when clean."""
    log.info("Tearing down stack %s on target %s.", state.name, state.target)
    target.teardown()
    left = target.leftovers()
    if not left:
        shutil.rmtree(state.dir, ignore_errors=True)  # state, secrets and SSH key go with the stack
    return left
