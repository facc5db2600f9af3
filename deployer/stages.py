"""The staged deployer: provision -> configure -> attach -> verify, recorded, resumable, and on a
deployed stack a change (day two) rather than a deploy.

Each stage records its outcome, duration, the load balancer's members as read back right after it,
the spec it ran from, and a fingerprint of what it consumed (``fingerprint``: only the spec fields of
``CONSUMES`` and, for configure, the roles and the image). ``up`` on a deployed stack first computes
the plan (``deployer.plan``: the recorded spec against the new one, and the members Patroni reports
pending a restart), logs it, and refuses a plan that replaces the cluster unless ``replace`` is
given. It then resumes: a stage already done is skipped, saying so, when it is still valid: its
recorded fingerprint equals the current one and a cheap live check of what it built passes
(``LIVE_CHECKS``). Otherwise it runs, and so does every stage after it (they build on it); each
converges in place: provision keeps the VMs and their data, configure ends with the rolling restart
of members pending one (``deployer.rolling``). ``--force STAGE`` (or ``all``) runs a stage whatever
its record; verify has no check cheaper than itself, so it always runs. Only a stack whose previous
run died before it was ever deployed is torn down by the target before it provisions again.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from deployer import patroni, rolling, scaling
from deployer.configure import run_playbook
from deployer.leftover_faults import check_nodes_answer, heal_leftovers
from deployer.plan import Plan, plan
from deployer.netprobe import tcp
from deployer.paths import ANSIBLE_DIR, REPO, SUITES, run_reports
from deployer.pki import StackPKI
from deployer.secrets import Secrets
from deployer.spec import StackSpec, check_for_target
from deployer.stack import Stack
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


def run_stage(state: StackState, target: Target, stage: str, work: Callable[[], dict | None],
              fingerprint: str | None = None) -> None:
    """Run one stage and record it with ``fingerprint`` and the spec it ran from, also when it fails
    or is interrupted."""
    log.info("Stage %s: starting.", stage)
    start = time.monotonic()
    try:
        facts = work() or {}
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
        state.record(stage, ok=False, seconds=time.monotonic() - start, error=reason, lb_members=_members(target),
                     fingerprint=fingerprint)
        log.error("Stage %s failed after %.1f s: %s", stage, time.monotonic() - start, reason)
        raise
    members = _members(target)
    state.record(stage, ok=True, seconds=time.monotonic() - start, lb_members=members, facts=facts,
                 fingerprint=fingerprint, spec=target.spec.model_dump(mode="json"))
    log.info("Stage %s: done in %.1f s; the load balancer reports %d member(s).", stage, time.monotonic() - start,
             len([m for m in members if "node" in m]))


#: Sources besides the spec that decide what configure does: the roles, and how the spec becomes
#: their variables.
CONFIGURE_SOURCES = (ANSIBLE_DIR, REPO / "deployer" / "inventory.py")


def _tree(root: Path) -> Iterable[Path]:
    """Every file under ``root`` (or ``root`` itself), sorted, hidden paths and caches left out."""
    files = [root] if root.is_file() else root.rglob("*")
    return sorted(p for p in files if p.is_file() and not any(
        part.startswith(".") or part == "__pycache__" for part in p.relative_to(root.parent).parts))


#: The spec's top-level fields each stage consumes; its fingerprint covers these only, so a field no
#: stage consumes (the drills' workload, the profile's name) re-runs nothing.
CONSUMES: dict[str, frozenset[str]] = {
    "provision": frozenset({"name", "admin_user", "network", "nodes", "ports", "security_rules", "load_balancer",
                            "local", "azure", "backup"}),
    "configure": frozenset({"name", "network", "nodes", "ports", "patroni", "postgres", "haproxy", "backup"}),
    "attach": frozenset({"nodes", "ports", "load_balancer"}),
}


def fingerprint(stage: str, spec: StackSpec, state: StackState) -> str:
    """SHA-256 of what ``stage`` is run from: the spec fields it consumes (``CONSUMES``; verify:
    all) and, for configure, the files of ``CONFIGURE_SOURCES`` and the VM image the target recorded
    (``state.data["image"]``) and the certificates it ships (``StackPKI.fingerprint_material``)."""
    digest = hashlib.sha256(spec.model_dump_json(include=CONSUMES.get(stage)).encode())
    if stage == "configure":
        for path in (p for root in CONFIGURE_SOURCES for p in _tree(root)):
            digest.update(f"\0{path.relative_to(REPO)}\0".encode() + path.read_bytes())
        digest.update(f"\0image\0{state.data.get('image', '')}".encode())
        digest.update(b"\0tls\0" + StackPKI(state.dir, spec.name).fingerprint_material())
    return digest.hexdigest()


def _vms_answer(target: Target) -> str | None:
    if not target.is_up():
        return "the target reports its infrastructure absent or a VM not running"
    for host in target.hosts():
        found = tcp(host.ssh_host, host.ssh_port, 3)
        if not found["reachable"]:
            return f"{host.node}'s sshd ({host.ssh_host}:{host.ssh_port}) does not answer: {found['detail']}"
    return None


def _patroni_answers(target: Target) -> str | None:
    want = (target.spec.patroni.scope, target.spec.patroni.version, "running")
    for node in target.spec.nodes:
        info = patroni.get(target, node.name, "/patroni")
        seen = (info.get("patroni", {}).get("scope"), info.get("patroni", {}).get("version"), info.get("state"))
        if seen != want:
            return f"{node.name}'s Patroni reports (scope, release, state) {seen}, expected {want}"
    pending = _pending(target)
    return f"Patroni reports {', '.join(pending)} pending a restart" if pending else None


def _pending(target: Target) -> list[str]:
    """The members Patroni reports waiting for a restart."""
    return [m.name for m in patroni.cluster(target) if m.pending_restart]


def _pool_healthy(target: Target) -> str | None:
    seen = [(m.node, m.healthy) for m in target.backend_pool()]
    expected = [(n.name, True) for n in target.spec.nodes]
    return None if seen == expected else f"the load balancer reports (member, healthy) {seen}, expected {expected}"


#: Each stage's cheap live check of what it built: (what passing means, the check: None when it
#: passes, else what it saw). A stage without one (verify) always runs.
LIVE_CHECKS: dict[str, tuple[str, Callable[[Target], str | None]]] = {
    "provision": ("every VM runs and its sshd answers", _vms_answer),
    "configure": ("every node's Patroni answers, runs the spec's release and scope, and none is pending a restart",
                  _patroni_answers),
    "attach": ("the load balancer reports every node as a healthy member", _pool_healthy),
}


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def still_valid(state: StackState, target: Target, stage: str) -> tuple[bool, str]:
    """Whether ``stage`` may be skipped, and the sentence saying why (or why it must run)."""
    title, rec = stage.capitalize(), state.stages.get(stage)
    if stage not in LIVE_CHECKS:
        return False, f"{title}: runs every time (it is the check itself)."
    if rec is None:
        return False, f"{title}: never run for this stack; running it."
    if not state.done(stage):
        return False, f"{title}: it or a stage before it did not succeed last time; running it."
    when = _when(rec.finished_at)
    if rec.fingerprint != fingerprint(stage, target.spec, state):
        changed = "the spec" + (", ansible/, the inventory code or the VM image" if stage == "configure" else "")
        why = "has no fingerprint (an older deployer)" if rec.fingerprint is None else f"is stale: {changed} changed"
        return False, f"{title}: done at {when}, but its record {why}; running it again."
    claim, check = LIVE_CHECKS[stage]
    try:
        problem = check(target)
    except Exception as exc:  # noqa: BLE001 - a check that cannot run proves nothing: the stage runs
        problem = f"its live check failed: {exc}"
    if problem:
        return False, f"{title}: done at {when} for this spec, but {problem}; running it again."
    return True, (f"{title}: done at {when} for this spec and still valid ({claim}); skipped. "
                  f"Pass --force {stage} to re-run it.")


def deployed_spec(state: StackState) -> StackSpec | None:
    """The spec the platform was last converged to: that of the newest successful stage that
    recorded one (None: never deployed, or by a deployer that kept no spec)."""
    done = [r for r in state.stages.values() if r.ok and r.spec is not None]
    if not done:
        return None
    try:
        return StackSpec.model_validate(max(done, key=lambda r: r.finished_at).spec)
    except ValueError:  # recorded by another version of the spec model: compare the platform only
        return None


def _what_is_lost(target: Target) -> str:
    """The data a replace deletes, as Patroni reports it (its scope, system identifier and timeline)."""
    try:
        view = patroni.get(target, next(m.name for m in patroni.cluster(target) if m.role == "leader"), "/patroni")
        return (f"the PostgreSQL cluster {view['patroni']['scope']!r} (system identifier "
                f"{view['database_system_identifier']}, timeline {view['timeline']}) and every row in it")
    except Exception:  # noqa: BLE001 - a cluster that does not answer still holds its data on disk
        return "the PostgreSQL cluster on the VMs' disks and every row in it (Patroni did not answer)"


def current_plan(state: StackState, target: Target) -> Plan | None:
    """The plan from what is deployed to ``target.spec`` (None: nothing deployed under this name, so
    ``up`` is a deploy). Members pending a restart are read from Patroni where it answers."""
    if not state.done("provision"):
        return None
    try:
        pending = _pending(target)
    except ConnectionError:
        pending = []
    return plan(deployed_spec(state), target.spec, pending)


def what_if(state: StackState, target: Target) -> list[str]:
    """What ``up`` would do, creating nothing: the plan with each change's impact, then the target's
    own preview of provision where it has one (Azure: ARM's what-if)."""
    found = current_plan(state, target)
    lines = (found.lines() + ([] if found.recorded else ["  (the deployed spec is not on record: only Patroni's "
                                                         "pending restarts were compared)"])
             if found else [f"Plan: stack {state.name} is not deployed: every stage runs and creates it."])
    if found and (refusal := found.refusal(_what_is_lost(target))):
        lines.append("Refused without --replace: " + refusal)
    try:
        lines += target.what_if()
    except TargetError as exc:
        if "no what-if preview" not in str(exc):
            raise
    return lines


def up(state: StackState, target: Target, *, from_stage: str | None = None, until: str = "verify",
       force: Iterable[str] = (), replace: bool = False, progress: Callable[[str], None] = log.info) -> None:
    """Bring the stack to ``until``. On a deployed stack the plan is logged first and a plan that
    replaces the cluster is refused (TargetError naming each such change and what would be lost)
    unless ``replace``, which tears the stack down and deploys it anew. A stage done and still valid
    (``still_valid``) is skipped; a stage in ``force`` (``"all"``: every one) runs whatever its
    record, and once one stage runs every later one does too. ``from_stage`` runs that stage and the
    later ones, trusting the record of those before it (they must have succeeded)."""
    last = STAGES.index(until)
    forced = set(STAGES[:last + 1]) if "all" in force else set(force)
    beyond = sorted(forced - set(STAGES[:last + 1]), key=STAGES.index)
    if beyond:
        raise TargetError(f"--force {' '.join(beyond)}: after --until {until}, so nothing would run it")
    target.preflight()
    if state.done("provision"):  # a run that died may have left a fault on: end it before planning
        for sentence in heal_leftovers(state, target):
            log.info("%s", sentence)
    found = current_plan(state, target)
    if found:
        for line in found.lines():
            log.info("%s", line)
        refusal = found.refusal(_what_is_lost(target))
        if refusal and not replace:
            raise TargetError(refusal)
        if refusal:
            log.info("Replacing stack %s, as --replace asks: tearing it down, then deploying it anew.", state.name)
            target.teardown()
            state.stages.clear()
            from_stage = None
        elif leaving := [c.path.split(".", 1)[1] for c in found.of("remove node")]:
            scaling.retire(Stack(deployed_spec(state), state), leaving)
    state.save()
    secrets = Secrets(state.dir)
    first = STAGES.index(from_stage) if from_stage else 0
    if first > 0 and not state.done(STAGES[first - 1]):
        raise TargetError(f"cannot start at {STAGES[first]}: stage {STAGES[first - 1]} has not succeeded")
    work = {
        "provision": lambda: target.provision(),
        "configure": lambda: _configure(target, secrets, progress),
        "attach": lambda: target.attach(),
        "verify": lambda: verify(state.name),
    }
    ran = ""
    for stage in STAGES[first:last + 1]:
        if stage == "configure" and (issued := target.ensure_certificates()):
            log.info("Certificates issued for %s (stack CA %s).", ", ".join(issued), target.pki.dir)
        if ran:
            log.info("%s: runs, because %s ran before it.", stage.capitalize(), ran)
        elif stage in forced or from_stage:
            log.info("%s: forced (%s); running it.", stage.capitalize(),
                     f"--from {from_stage}" if from_stage else f"--force {stage}")
        else:
            skip, sentence = still_valid(state, target, stage)
            log.info("%s", sentence)
            if skip:
                continue
        run_stage(state, target, stage, work[stage], fingerprint(stage, target.spec, state))
        ran = ran or stage


def _configure(target: Target, secrets: Secrets, progress: Callable[[str], None]) -> dict:
    """Every node answers (or says which does not), Ansible, then the rolling restart of every member
    Patroni reports pending one."""
    check_nodes_answer(target)
    result = run_playbook(target, secrets, progress)
    log.info("Ansible converged: %d task(s) changed (%s).", result["changed"],
             ", ".join(f"{h}: {n}" for h, n in sorted(result["changed_by_host"].items())) or "none")
    result["restarts"] = (rolling.restart_outdated_patroni(target, secrets, progress)
                          + rolling.restart_pending(target, secrets, progress))
    if not result["restarts"]:
        log.info("Rolling restart: no member is pending a restart.")
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
