"""Day-two changes drilled like faults: ``deployer up`` applies a changed spec under the drills'
load and the checkers judge the history, as for a fault. The "fault" is the change (``up`` with the
changed spec, through the real CLI), its hold checks that the platform runs it, its heal is ``up``
with the stack's own spec again (itself a change of the same class, inside the same history).

A ``SpecChange`` is a spec overlay derived from the stack's spec, the impact the plan must give it,
and what the platform must report once it is applied (``applied``). Its hold fails, naming what it
saw, unless ``up``'s plan named the expected impact, no member is pending a restart, every node
runs the changed settings, the cluster kept its system identifier (its data), and the leader
changed exactly as the class allows: a rolling restart hands over once (a switchover), the others
never. The catalogue gives each change class one entry (``catalogue.CHANGES``).

``CertRotation`` drills ``deployer rotate-certs`` the same way: its fault is the rotation through the
CLI, its hold checks that every node serves a certificate of the new CA and nothing else changed; a
rotation is not undone, so it has no heal (a failed one leaves the old CA trusted and raises).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml
from cryptography import x509

from deployer import backups, haproxy_stat, patroni, rotation
from deployer.drills.holds import writes_flow
from deployer.plan import Impact
from deployer.settings_check import pending_restarts, setting_differences, settings_query
from deployer.spec import StackSpec, load_spec
from deployer.stack import Stack
from deployer.targets import TargetError
from load.runner import Workload


def deployer_up(stack: Stack, spec_file: Path) -> str:
    """``deployer up --until attach`` of ``stack`` with ``spec_file`` through the CLI; its log.
    TargetError with the log's tail when it fails."""
    proc = subprocess.run([sys.executable, "-m", "deployer.cli", "up", "--name", stack.state.name, "--spec",
                           str(spec_file), "--target", stack.state.target, "--until", "attach"],
                          capture_output=True, text=True, timeout=1800)
    log = " ".join(proc.stderr.split())
    if proc.returncode != 0:
        raise TargetError(f"deployer up --spec {spec_file} exited {proc.returncode}: {log[-1500:]}")
    return log


def deployer_rotate_certs(stack: Stack) -> str:
    """``deployer rotate-certs`` of ``stack`` through the CLI; its log. TargetError with the log's
    tail when it fails."""
    proc = subprocess.run([sys.executable, "-m", "deployer.cli", "rotate-certs", "--name", stack.state.name],
                          capture_output=True, text=True, timeout=1800)
    log = " ".join(proc.stderr.split())
    if proc.returncode != 0:
        raise TargetError(f"deployer rotate-certs exited {proc.returncode}: {log[-1500:]}")
    return log


def _timeline(stack: Stack) -> int:
    return max(m.timeline or 0 for m in stack.cluster())


def _system_id(stack: Stack) -> str:
    return patroni.get(stack.target, stack.leader().name, "/patroni")["database_system_identifier"]


@dataclasses.dataclass(frozen=True)
class SpecChange:
    """``overlay(spec)``: the spec keys the change sets (merged over the stack's spec like a profile);
    ``impact``: the plan's class for it; ``applied(stack, changed)``: what the platform reports that
    differs from ``changed`` (empty: it runs the change)."""

    name: str
    overlay: Callable[[StackSpec], dict]
    impact: Impact
    applied: Callable[[Stack, StackSpec], list[str]]
    seen: dict = dataclasses.field(default_factory=dict, compare=False)

    def spec_file(self, stack: Stack) -> Path:
        """The changed spec: a profile extending the stack's own spec file, in its state dir."""
        path = stack.state.dir / "changes" / f"{self.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"extends": str(Path(stack.state.spec_path).resolve()),
                                        **self.overlay(stack.spec)}, sort_keys=False))
        return path

    @contextlib.contextmanager
    def fault(self, stack: Stack, node: str) -> Iterator[None]:
        """Apply the change with ``deployer up``; heal: ``deployer up`` with the stack's own spec."""
        own, changed = Path(stack.state.spec_path), self.spec_file(stack)
        self.seen.clear()
        self.seen.update(system_id=_system_id(stack), timeline=_timeline(stack), spec=load_spec(changed))
        try:
            self.seen["log"] = deployer_up(stack, changed)
            yield
        finally:
            deployer_up(stack, own)

    def hold(self, stack: Stack, workload: Workload, leader: str, victim: str, budget_s: float) -> None:
        """The change is applied, as the module says; then writes flow for a loop."""
        changed: StackSpec = self.seen["spec"]
        problems = [] if re.search(rf"Plan: (\d+) change\(s\): \1 {self.impact}\.", self.seen["log"]) else [
            f"up's plan did not classify the change as {self.impact!r} alone: {self.seen['log'][:600]}"]
        problems += pending_restarts({n.name: patroni.get(stack.target, n.name, "/patroni") for n in stack.spec.nodes})
        problems += self.applied(stack, changed)
        if (now := _system_id(stack)) != self.seen["system_id"]:
            problems.append(f"the system identifier changed from {self.seen['system_id']} to {now}: the data was re-created")
        handovers = _timeline(stack) - self.seen["timeline"]
        allowed = 1 if self.impact == "rolling restart" else 0
        if handovers != allowed:
            problems.append(f"expected {allowed} leader change(s) (new timelines) while up applied a {self.impact} "
                            f"change, saw {handovers}")
        if problems:
            raise AssertionError(f"{self.name}: " + "; ".join(problems))
        writes_flow(stack, workload, leader, victim, budget_s)


def settings_applied(stack: Stack, changed: StackSpec) -> list[str]:
    """Every node runs ``changed``'s PostgreSQL settings (``pg_settings``)."""
    expected = changed.postgres_settings()
    return setting_differences(expected, {n.name: stack.psql(n.name, settings_query(expected)) for n in stack.spec.nodes})


def archiving_applied(stack: Stack, changed: StackSpec) -> list[str]:
    """``settings_applied``, and the leader's archiver keeps ``changed``'s promise (no failure, the
    last archived WAL within its ``archive_max_age_s``)."""
    archiver = backups.read_archiver(stack, stack.leader().name)
    return settings_applied(stack, changed) + backups.archive_problems(archiver, changed.backup.archive_max_age_s)


def haproxy_checks_applied(stack: Stack, changed: StackSpec) -> list[str]:
    """Every node's HAProxy reports ``changed``'s check fall and rise on every server (``show stat``)."""
    want = (str(changed.haproxy.check_fall), str(changed.haproxy.check_rise))
    return [f"{node.name}'s HAProxy checks {listener}/{server} with fall/rise {row['check_fall']}/{row['check_rise']}, "
            f"the spec says {'/'.join(want)}"
            for node in stack.spec.nodes
            for listener, rows in haproxy_stat.servers(stack.haproxy_admin(node.name, "show stat")).items()
            for server, row in rows.items() if (row.get("check_fall"), row.get("check_rise")) != want]


def members_applied(stack: Stack, changed: StackSpec) -> list[str]:
    """Patroni, etcd and the load balancer each report exactly ``changed``'s nodes: every replica
    streaming, every etcd member started, every pool member healthy."""
    want = sorted(n.name for n in changed.nodes)
    members = patroni.cluster(stack.target)
    etcd = sorted(m.get("name", "") for m in stack.etcdctl(stack.spec.nodes[0].name, "member", "list")["members"])
    pool = sorted(m.node for m in stack.target.backend_pool() if m.healthy)
    seen = {"Patroni's streaming members": sorted(m.name for m in members if m.state in ("running", "streaming")),
            "etcd's started members": etcd, "the load balancer's healthy members": pool}
    return [f"{what} are {names}, the spec's nodes are {want}" for what, names in seen.items() if names != want]


def patroni_release_applied(stack: Stack, changed: StackSpec) -> list[str]:
    """Every member's Patroni runs ``changed``'s release (``GET /patroni``)."""
    want = changed.patroni.version
    running = {m.name: patroni.get(stack.target, m.name, "/patroni").get("patroni", {}).get("version")
               for m in patroni.cluster(stack.target)}
    return [f"{name}'s Patroni runs {release}, the spec says {want}" for name, release in running.items() if release != want]


#: The Patroni release the version drill moves to and back from (the previous minor's last).
OTHER_PATRONI_RELEASE = "4.0.7"


def _more_nodes(spec: StackSpec, count: int) -> dict:
    last = max(n.address for n in spec.nodes)
    return {"nodes": [n.model_dump(mode="json") for n in spec.nodes]
            + [{"name": f"pg{len(spec.nodes) + i}", "address": str(last + i)} for i in range(1, count + 1)]}


def _parameters(spec: StackSpec, **more: str) -> dict:
    return {"postgres": {"parameters": {**spec.postgres.parameters, **more}}}


CHANGES: tuple[SpecChange, ...] = (
    SpecChange("reload", lambda s: _parameters(s, work_mem="8MB"), "reload", settings_applied),
    SpecChange("rolling-restart", lambda s: {"postgres": {"max_connections": s.postgres.max_connections + 20}},
               "rolling restart", settings_applied),
    SpecChange("backup-archive-timeout", lambda s: {"backup": {"archive_timeout_s": s.backup.archive_timeout_s // 2}},
               "reload", archiving_applied),
    SpecChange("haproxy", lambda s: {"haproxy": {"check_fall": s.haproxy.check_fall + 1}}, "in place",
               haproxy_checks_applied),
    SpecChange("patroni-version", lambda s: {"patroni": {"version": OTHER_PATRONI_RELEASE}}, "rolling restart",
               patroni_release_applied),
    SpecChange("scale-out-in", lambda s: _more_nodes(s, 2), "add node", members_applied),
)



def _ca_serial(stack: Stack) -> str:
    return rotation.serial(x509.load_pem_x509_certificate(stack.target.pki.ca_cert.read_bytes()))


@dataclasses.dataclass(frozen=True)
class CertRotation:
    """``deployer rotate-certs`` as a change drill (see the module docstring)."""

    name: str = "rotate-certs"
    seen: dict = dataclasses.field(default_factory=dict, compare=False)

    @contextlib.contextmanager
    def fault(self, stack: Stack, node: str) -> Iterator[None]:
        """Rotate through the CLI; nothing to heal (a rotation is not undone)."""
        self.seen.clear()
        self.seen.update(system_id=_system_id(stack), timeline=_timeline(stack), ca=_ca_serial(stack))
        self.seen["log"] = deployer_rotate_certs(stack)
        yield

    def hold(self, stack: Stack, workload: Workload, leader: str, victim: str, budget_s: float) -> None:
        """A new CA, trusted alone; every node serves a certificate it issued on 5432, 8008 and 2379
        (its issuer is the CA's subject); no member pending a restart, the same system identifier and
        timeline (no handover); then writes flow for a loop."""
        problems = [] if (now := _ca_serial(stack)) != self.seen["ca"] else [
            f"the CA is still {now}: rotate-certs made no new one"]
        if len(trusted := stack.target.pki.trusted()) != 1:
            problems.append(f"trust.crt holds {len(trusted)} CAs after the rotation, expected the new one alone")
        problems += rotation.not_of_current_ca(stack)
        problems += pending_restarts({n.name: patroni.get(stack.target, n.name, "/patroni") for n in stack.spec.nodes})
        if (system_id := _system_id(stack)) != self.seen["system_id"]:
            problems.append(f"the system identifier changed from {self.seen['system_id']} to {system_id}")
        if (handovers := _timeline(stack) - self.seen["timeline"]) != 0:
            problems.append(f"expected no leader change (the rotation reloads, never switches over), saw {handovers}")
        if problems:
            raise AssertionError(f"{self.name}: " + "; ".join(problems))
        writes_flow(stack, workload, leader, victim, budget_s)


ROTATE_CERTS = CertRotation()
