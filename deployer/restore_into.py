"""``deployer restore --into NAME``: a stack's cluster restored into a new stack beside it (a dropped
table is read back from a copy while the cluster that lost it keeps serving), to a point in time or
to the end of its archive.

The new stack is deployed from the source's spec renamed ``NAME`` (``sibling_spec``: on the local
target every stack shares the host's routing table, so its addresses move clear of every local
stack's), or from a spec file given for it, with ``up``'s four stages like any stack. Then its own,
empty cluster is replaced by the source's (``restore.restore`` with ``source``): the source's
repository opened to its first node for the bootstrap only, its own repository holding the restored
cluster's new timeline from then on. The source is only read: its cluster, DCS and repository are
not written to. A failure tears the new stack down (it held nothing yet) unless asked to keep it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import logging
from collections.abc import Callable, Iterable

import yaml

from deployer import restore, stages
from deployer.spec import StackSpec, check_stack_name, load_spec, parse_spec
from deployer.stack import Stack
from deployer.state import STATE_ROOT, StackState, write_private
from deployer.targets import TargetError

log = logging.getLogger("deployer.restore")
#: The transit links the local target carves from ``local.transit_cidr`` (4 x /30) fill its first /28.
TRANSIT_LINKS_PREFIX = 28
#: How many address slots beside a stack ``sibling_spec`` tries.
SLOTS = 15


def _moved(spec: StackSpec, name: str, slot: int) -> StackSpec:
    """``spec`` named ``name``, its vnet (subnet and nodes) moved ``slot`` vnets up, its transit
    links ``slot`` /28s up and its frontend ``slot`` addresses up."""
    raw = spec.model_dump(mode="json")
    by = slot * spec.network.vnet_cidr.num_addresses

    def up(address: str, n: int) -> str:
        return str(ipaddress.ip_address(address) + n)

    raw["name"] = name
    for key in ("vnet_cidr", "subnet_cidr"):
        net = ipaddress.ip_network(raw["network"][key])
        raw["network"][key] = f"{up(str(net.network_address), by)}/{net.prefixlen}"
    for node in raw["nodes"]:
        node["address"] = up(node["address"], by)
    transit = _links(spec).network_address + slot * _links(spec).num_addresses
    raw["local"]["transit_cidr"] = f"{transit}/{TRANSIT_LINKS_PREFIX}"
    raw["local"]["frontend_address"] = up(raw["local"]["frontend_address"], slot)
    return parse_spec(raw, source=f"{spec.name}'s spec moved for {name}")


def _links(spec: StackSpec) -> ipaddress.IPv4Network:
    """The addresses of the local target's transit links of ``spec``."""
    return next(spec.local.transit_cidr.subnets(new_prefix=TRANSIT_LINKS_PREFIX))


def _clash(a: StackSpec, b: StackSpec) -> bool:
    return (a.network.vnet_cidr.overlaps(b.network.vnet_cidr) or _links(a).overlaps(_links(b))
            or a.local.frontend_address == b.local.frontend_address)


def sibling_spec(source: StackSpec, name: str, others: Iterable[StackSpec]) -> StackSpec:
    """``source`` renamed ``name``, everything else equal but its addresses, moved to the first slot
    (``_moved``) that clashes with none of ``others`` (the specs of every stack on this host, the
    source's among them): no two vnets overlap, no two stacks share transit links or a frontend.
    Security rules naming literal CIDRs are not moved (the default spec's use tags)."""
    others = list(others)
    for slot in range(1, SLOTS + 1):
        spec = _moved(source, name, slot)
        if not any(_clash(spec, other) for other in others):
            return spec
    raise TargetError(f"no free addresses for stack {name} within {SLOTS} slots beside {source.name}'s: "
                      "give it a spec file (--spec)")


def specs_on_this_host() -> list[StackSpec]:
    """The spec of every stack with a saved state here whose spec file still reads."""
    found = []
    for path in sorted(STATE_ROOT.glob("*/state.json")):
        state = StackState.load(path.parent.name)
        try:
            found.append(load_spec(state.spec_path))
        except Exception as exc:  # a stack whose spec file is gone still holds addresses: say so
            log.warning("Stack %s: its spec %s does not read (%s); its addresses are not avoided.",
                        state.name, state.spec_path, exc)
    return found


@dataclasses.dataclass(frozen=True)
class Restored:
    """The new stack and the seconds each part took (``deploy``, then ``restore.restore``'s steps, ``total``)."""

    stack: Stack
    seconds: dict[str, float]


def restore_into(source: Stack, name: str, to: dt.datetime | None, spec: StackSpec | None = None, keep: bool = False,
                 progress: Callable[[str], None] = log.info) -> Restored:
    """Deploy stack ``name`` beside ``source`` and restore ``source``'s cluster into it (see the
    module docstring). ``spec``: the new stack's (its name is set to ``name``); default
    ``sibling_spec``. TargetError when ``name`` exists already, or is the source; on failure the new
    stack is torn down unless ``keep``."""
    check_stack_name(name)
    if name == source.state.name or StackState.load(name) is not None:
        raise TargetError(f"stack {name} exists already: restore into a new stack (or `deployer down --name {name}` first)")
    if not source.spec.backup.enabled:
        raise TargetError(f"stack {source.state.name}'s spec turns backups off (backup.enabled: false)")
    spec = spec.model_copy(update={"name": name}) if spec else sibling_spec(source.spec, name, specs_on_this_host())
    if not spec.backup.enabled:
        raise TargetError(f"the spec for {name} turns backups off: the restored cluster would have no repository")
    path = STATE_ROOT / name / "stack.yaml"
    write_private(path, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    state, target = stages.open_stack(name, source.state.target, spec, path)
    started = dt.datetime.now(dt.timezone.utc)
    try:
        progress(f"deploying stack {name} (subnet {spec.network.subnet_cidr}) to restore {source.state.name} into")
        stages.up(state, target, progress=progress)
        deployed = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
        stack = Stack(spec, state)
        seconds = restore.restore(stack, to, progress=progress, source=source)
    except BaseException:
        if not keep:
            log.error("Restoring into %s failed: tearing %s down (it held nothing of its own).", name, name)
            try:
                stages.down(state, target)
            except Exception as exc:  # the restore's error is the one to raise
                log.error("Tearing %s down failed too: %s; `deployer down --name %s` finishes it.", name, exc, name)
        raise
    return Restored(stack, {"deploy": round(deployed, 1), **seconds, "total": round(deployed + seconds["total"], 1)})
