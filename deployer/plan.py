"""Day two: what ``deployer up`` would change on a deployed stack, and each change's impact.

``up`` on a stack that holds data is a change, not a deploy. ``plan`` compares the spec the stack
was last deployed from (recorded by each stage in the state) with the spec given now, field by
field, adds what the platform reports still pending (members whose running PostgreSQL waits for a
restart), and classifies every difference by ``Impact``, from harmless to destructive:

- ``none``: nothing on the cluster changes (the drills' workload, a profile's name);
- ``in place``: NSG rules, load balancer and HAProxy settings, reloaded without a restart;
- ``reload``: Patroni and PostgreSQL settings applied on SIGHUP or through the DCS;
- ``rolling restart``: members restarted one at a time (replicas first, a switchover, the former
  leader): PostgreSQL settings of context ``postmaster``, package versions, etcd settings;
- ``add node`` / ``remove node``: a node joins or leaves etcd, Patroni and the load balancer;
- ``replace``: the cluster's data is re-created (a changed subnet, a node's address, PostgreSQL's
  major version): refused unless the user asks for exactly that (``up --replace``), as Terraform's
  "forces replacement".

Every spec field has its rule in ``RULES`` (a unit test walks the model), so a field added to the
spec without a decision about its impact fails the tests rather than the cluster.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Mapping
from typing import Literal

from deployer.spec import StackSpec

Impact = Literal["none", "in place", "reload", "rolling restart", "add node", "remove node", "replace"]
#: Impacts from harmless to destructive.
IMPACTS: tuple[Impact, ...] = ("none", "in place", "reload", "rolling restart", "add node", "remove node", "replace")

#: (dotted path pattern, impact, why), first match wins. ``*`` matches one path segment (a node's
#: or a rule's name). Paths are the spec's fields as ``flatten`` spells them.
RULES: tuple[tuple[str, Impact, str], ...] = (
    ("profile", "none", "the profile's name labels reports only"),
    ("workload.*", "none", "the drills' load: nothing on the cluster changes"),
    ("local.min_free_disk_gib", "none", "a preflight threshold of this machine"),
    ("azure.expiry_hours", "none", "a tag the expiry sweep reads"),
    ("azure.subscription_allow_list", "none", "a guard of the deployer, nothing deployed"),
    ("name", "replace", "the stack's name names every resource and etcd's cluster token"),
    ("admin_user", "replace", "the admin user is created with each VM"),
    ("network.*", "replace", "the subnet holds every node's address: the VMs and their data are re-created"),
    ("nodes.*.name", "remove node", "a node's name is its identity: a renamed node is removed and another added"),
    ("nodes.*.address", "replace", "a node's address is its identity in etcd, Patroni, the NSG and the pool"),
    ("nodes.*.zone", "replace", "a VM cannot move between availability zones: it is re-created"),
    ("postgres.version", "replace", "a new major version needs a new data directory"),
    ("patroni.scope", "replace", "a new scope is a new cluster in the DCS, bootstrapped empty"),
    ("azure.location", "replace", "every resource lives in its region"),
    ("local.transit_cidr", "replace", "the local target's namespaces are rebuilt around new links"),
    ("local.frontend_address", "replace", "the local target's namespaces are rebuilt around a new frontend"),
    ("security_rules*", "in place", "the NSG's rules are replaced at once, as one transaction"),
    ("azure.admin_cidr", "in place", "an NSG rule's source, replaced at once"),
    ("load_balancer.*", "in place", "the load balancer's probe or rule is updated in place"),
    ("haproxy.*", "in place", "each node's HAProxy reloads (no connection refused), one node at a time"),
    ("ports.haproxy_*", "in place", "each node's HAProxy and the load balancer rebind, one at a time"),
    ("ports.ssh", "in place", "sshd and the NSG, reloaded"),
    ("ports.patroni", "reload", "Patroni's REST API rebinds on SIGHUP"),
    ("ports.postgres", "rolling restart", "PostgreSQL binds its port at start"),
    ("ports.etcd_*", "rolling restart", "each etcd member restarts on its new port, one at a time"),
    ("patroni.version", "rolling restart", "a new Patroni release: each member's Patroni restarts"),
    ("patroni.etcd_leader_elsewhere", "in place", "a daemon on every node starts or stops"),
    ("patroni.*", "reload", "Patroni applies its dynamic configuration through the DCS, without a restart"),
    ("postgres.max_connections", "rolling restart", "max_connections takes effect at a server start (context postmaster)"),
    ("backup.enabled", "rolling restart", "archive_mode takes effect at a server start (context postmaster)"),
    ("backup.archive_timeout_s", "reload", "archive_timeout is applied through the DCS on SIGHUP"),
    ("backup.rpo_s", "none", "a promise the checks and drills hold the stack to"),
    ("backup.rto_s", "none", "a promise the recovery drills hold the stack to"),
    ("backup.container", "in place", "a new, empty repository: the stanza is created there and a full backup "
                                     "taken; the old container keeps the old backups"),
    ("backup.*", "in place", "pgBackRest's configuration and the backup timers on each node, rewritten"),
    ("azure.vm_size", "rolling restart", "each VM is resized, which reboots it, one at a time"),
)


@dataclasses.dataclass(frozen=True)
class Change:
    """One difference between what is deployed and what the spec asks for, with its impact and the
    reason for it (``path`` is the spec field, or ``node <name>`` for a platform read-back)."""

    path: str
    before: object
    after: object
    impact: Impact
    why: str

    def sentence(self) -> str:
        return f"{self.impact:>15}  {self.path}: {_show(self.before)} -> {_show(self.after)} ({self.why})"


def _show(value: object) -> str:
    return "(absent)" if value is None else repr(value) if isinstance(value, str) else str(value)


def flatten(value: object, prefix: str = "") -> dict[str, object]:
    """A spec dump as ``{dotted path: leaf}``; lists of named items are keyed by name (a node's fields
    each, a security rule whole: it is applied as one), other lists are leaves."""
    if prefix == "security_rules.":
        return {f"{prefix}{rule['name']}": rule for rule in value}
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    if isinstance(value, list) and value and all(isinstance(i, Mapping) and "name" in i for i in value):
        return {k: v for item in value for k, v in flatten(item, f"{prefix}{item['name']}.").items()}
    return {prefix.rstrip("."): value}


def classify(path: str) -> tuple[Impact, str]:
    """The impact of changing the spec field ``path`` and why; a PostgreSQL parameter's impact is
    its context's (``postmaster``: a restart). KeyError for a field no rule covers."""
    if path.startswith("postgres.parameters."):
        from deployer import pg_parameters

        name = path.split(".", 2)[2]
        if pg_parameters.needs_restart(name):
            return "rolling restart", f"{name} takes effect at a server start (context postmaster)"
        return "reload", f"{name} is applied on reload (context {pg_parameters.context(name)})"
    for pattern, impact, why in RULES:
        if fnmatch.fnmatchcase(path, pattern):
            return impact, why
    raise KeyError(f"no rule of deployer.plan.RULES says what changing {path!r} does to a deployed stack")


def spec_changes(before: StackSpec | None, after: StackSpec) -> list[Change]:
    """Every field that differs between the deployed spec ``before`` and ``after``, classified.
    A node only in one of them is one ``add node``/``remove node`` change, not one per field."""
    if before is None:
        return []
    old, new = (flatten(s.model_dump(mode="json")) for s in (before, after))
    old_nodes, new_nodes = ({n.name for n in s.nodes} for s in (before, after))
    changes = [Change(f"nodes.{n}", None, str(after.node(n).address), "add node",
                      "joins etcd, Patroni (a replica cloned from the leader) and the load balancer's pool")
               for n in sorted(new_nodes - old_nodes)]
    changes += [Change(f"nodes.{n}", str(before.node(n).address), None, "remove node",
                       "leaves the load balancer's pool, Patroni (a switchover first if it leads) and etcd")
                for n in sorted(old_nodes - new_nodes)]
    for path in sorted(set(old) | set(new)):
        if old.get(path) == new.get(path) or (path.startswith("nodes.") and path.split(".")[1] not in old_nodes & new_nodes):
            continue
        changes.append(Change(path, old.get(path), new.get(path), *classify(path)))
    return changes


def pending_changes(pending: Iterable[str]) -> list[Change]:
    """Members the platform reports waiting for a restart (Patroni's ``pending_restart``), whatever
    the spec says: a setting changed earlier and never applied, by us or by hand."""
    return [Change(f"node {n}", "pending restart", "restarted", "rolling restart",
                   "Patroni reports a setting that takes effect only at PostgreSQL's next start")
            for n in sorted(pending)]


@dataclasses.dataclass(frozen=True)
class Plan:
    """The changes ``up`` would apply, in spec order; ``recorded`` says whether the deployed spec
    was on record (without it only the platform's read-backs are compared)."""

    changes: list[Change]
    recorded: bool = True

    @property
    def impact(self) -> Impact:
        """The worst impact of the plan (``none`` when empty)."""
        return max((c.impact for c in self.changes), key=IMPACTS.index, default="none")

    def of(self, *impacts: Impact) -> list[Change]:
        return [c for c in self.changes if c.impact in impacts]

    def lines(self) -> list[str]:
        """The plan as a person reads it: one line per change, worst impact first."""
        if not self.changes:
            return ["Plan: no change (the deployed stack matches the spec)."]
        counts = ", ".join(f"{sum(c.impact == i for c in self.changes)} {i}" for i in reversed(IMPACTS)
                           if any(c.impact == i for c in self.changes))
        ordered = sorted(self.changes, key=lambda c: -IMPACTS.index(c.impact))
        return [f"Plan: {len(self.changes)} change(s): {counts}."] + [f"  {c.sentence()}" for c in ordered]

    def refusal(self, what_is_lost: str) -> str | None:
        """Why ``up`` refuses this plan without ``--replace`` (None when it has no replace)."""
        replace = self.of("replace")
        if not replace:
            return None
        forced = "\n".join(f"  {c.path}: {_show(c.before)} -> {_show(c.after)} forces replacement ({c.why})"
                           for c in replace)
        return (f"the plan replaces the cluster:\n{forced}\nReplacing it deletes {what_is_lost}. Run "
                "`deployer up --replace` to do exactly that, or revert these fields to keep the data.")


def plan(before: StackSpec | None, after: StackSpec, pending: Iterable[str] = ()) -> Plan:
    """The plan from the deployed spec ``before`` (None: not on record) to ``after``, with the members
    the platform reports pending a restart."""
    return Plan(spec_changes(before, after) + pending_changes(pending), recorded=before is not None)
