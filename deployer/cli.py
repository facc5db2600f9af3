"""``deployer``: stand up, inspect and tear down the staged HA PostgreSQL stack.

    deployer up     [--target local|azure] [--spec FILE] [--name NAME] [--from STAGE] [--until STAGE]
                    [--force STAGE|all ...] [--what-if] [--replace]
    deployer status [--name NAME] [--json]
    deployer down   [--name NAME] [--target local|azure]
    deployer image  [--spec FILE]
    deployer break  DEFECT [--name NAME]  # seed a documented misconfiguration (deployer/defects.py)
    deployer heal   [--name NAME]         # undo every seeded one, back to exactly the spec
    deployer rotate-certs [--name NAME]   # a new CA and node certificates, node by node (deployer/rotation.py)
    deployer backup [--name NAME] [--type auto|full|diff]  # a backup on the leader now (deployer/backups.py)
    deployer restore (--latest | --to TIME) [--name NAME]  # the cluster from its repository, in place (deployer/restore.py)
    deployer restore (--latest | --to TIME) [--name NAME] --into NEW [--spec FILE] [--keep-on-failure]
                                                         # into a new stack beside it (deployer/restore_into.py)
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from deployer import stages, status
from deployer.spec import DEFAULT_SPEC, SpecError, check_stack_name, load_spec
from deployer.state import STAGES, StackState
from deployer.targets import TargetError, get

console = Console(stderr=True)
log = logging.getLogger("deployer")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deployer", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    upp = sub.add_parser("up", help="provision -> configure -> attach -> verify (resumes)")
    upp.add_argument("--target", default="local", help="local (default) or azure")
    upp.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="stack spec file (default: stack.yaml)")
    upp.add_argument("--name", help="stack name (default: the spec's name)")
    upp.add_argument("--from", dest="from_stage", choices=STAGES, help="re-run from this stage")
    upp.add_argument("--until", choices=STAGES, default="verify", help="stop after this stage")
    upp.add_argument("--force", action="append", default=[], choices=(*STAGES, "all"), metavar="STAGE",
                     help="re-run this stage (repeatable; `all`: every one) even when it is done and still valid")
    upp.add_argument("--what-if", action="store_true",
                     help="print the plan (each change and its impact; on azure also ARM's what-if); change nothing")
    upp.add_argument("--replace", action="store_true",
                     help="allow a plan that re-creates the cluster and its data (refused without it)")
    for name, text in (("status", "stages, Patroni roles, lag, load balancer members"), ("down", "tear everything down")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--name", help="stack name (default: the default spec's name)")
        if name == "status":
            sp.add_argument("--json", action="store_true", help="machine-readable output (stable keys)")
        else:
            sp.add_argument("--target", help="the target to clean when no state is saved (default: local, "
                                             "but required on a CI agent)")
    brk = sub.add_parser("break", help="apply a documented misconfiguration to a live local stack")
    brk.add_argument("defect", help="one of the defects in deployer/defects.py")
    brk.add_argument("--name", help="stack name (default: the default spec's name)")
    hl = sub.add_parser("heal", help="undo every defect applied with `deployer break`")
    hl.add_argument("--name", help="stack name (default: the default spec's name)")
    rot = sub.add_parser("rotate-certs", help="replace the CA and every node's certificate, node by node, the old "
                                              "CA trusted until every node serves the new ones")
    rot.add_argument("--name", help="stack name (default: the default spec's name)")
    bk = sub.add_parser("backup", help="take a backup with pgBackRest on the leader now, into the stack's repository")
    bk.add_argument("--name", help="stack name (default: the default spec's name)")
    bk.add_argument("--type", choices=("auto", "full", "diff"), default="full",
                    help="full (default), diff (since the newest full), or auto (what the schedule owes, if anything)")
    rs = sub.add_parser("restore", help="replace the cluster's data, on every node, with its repository's: to the end "
                                        "of the archive or to a point in time")
    rs.add_argument("--name", help="stack name (default: the default spec's name)")
    when = rs.add_mutually_exclusive_group(required=True)
    when.add_argument("--latest", action="store_true", help="to the last archived WAL (every node's data lost)")
    when.add_argument("--to", type=_utc, metavar="TIME",
                      help="to this point in time, ISO 8601 (no zone: UTC), e.g. 2026-12-06T02:10:00Z")
    rs.add_argument("--into", metavar="NEW", help="deploy stack NEW and restore into it, leaving the stack untouched")
    rs.add_argument("--spec", type=Path, help="with --into: NEW's spec file (default: the stack's, with addresses "
                                              "clear of every local stack's)")
    rs.add_argument("--keep-on-failure", action="store_true", help="with --into: keep NEW when the restore fails")
    img = sub.add_parser("image", help="bake the local VM image (cached by content hash)")
    img.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="stack spec file (default: stack.yaml)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    return p


def _utc(text: str) -> dt.datetime:
    """An ISO 8601 time as an aware datetime (UTC when it names no zone)."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time: {exc}") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _stack(name: str):
    state = StackState.load(name)
    if state is None:
        raise TargetError(f"no stack named {name!r} here (nothing under {StackState.path_for(name).parent})")
    return state, get(state.target)(load_spec(state.spec_path), state)


def cmd_up(args) -> int:
    spec = load_spec(args.spec)
    name = check_stack_name(args.name or spec.name)
    state, target = stages.open_stack(name, args.target, spec, args.spec)
    if args.what_if:
        target.preflight()
        for line in stages.what_if(state, target):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        return 0
    with console.status(f"[bold]deploying {name} on {args.target}") as spinner:
        stages.up(state, target, from_stage=args.from_stage, until=args.until, force=args.force,
                  replace=args.replace, progress=lambda msg: spinner.update(f"[bold]{name}[/]: {msg}"))
    _print_status(status.collect(state, target))
    return 0


def cmd_image(args) -> int:
    from deployer.inventory import image_packages
    from deployer.targets.local.image import ensure_image
    from deployer.targets.local.target import IMAGE_CACHE

    spec = load_spec(args.spec)
    debs, pips = image_packages(spec)
    with console.status("[bold]VM image") as spinner:
        path = ensure_image(debs, pips, admin_user=spec.admin_user, cache_root=IMAGE_CACHE,
                            progress=lambda msg: (log.info("%s", msg), spinner.update(f"[bold]VM image[/]: {msg}")))
    console.print(f"VM image ready: {path}")
    return 0


def cmd_status(args) -> int:
    state, target = _stack(check_stack_name(args.name or load_spec(DEFAULT_SPEC).name))
    data = status.collect(state, target)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_status(data)
    return 0


def cmd_break(args) -> int:
    from deployer import defects
    from deployer.stack import Stack

    defect = defects.apply(Stack.attach(check_stack_name(args.name or load_spec(DEFAULT_SPEC).name)), args.defect)
    console.print(f"Applied {defect.name}: {defect.description}. Guarded by: {', '.join(defect.guards)}.")
    return 0


def cmd_heal(args) -> int:
    """Undo the seeded defects, then heal what runs that died left on (``heal_leftovers``); exit 1
    while something they left could not be healed."""
    from deployer import defects
    from deployer.leftover_faults import heal_leftovers, unhealed
    from deployer.stack import Stack

    stack = Stack.attach(check_stack_name(args.name or load_spec(DEFAULT_SPEC).name))
    healed = defects.heal(stack)
    console.print(f"Healed {', '.join(healed)}." if healed else "No defect was applied; nothing to heal.")
    left = heal_leftovers(stack.state, stack.target, stack=stack)
    for sentence in left or ["No run that died left a fault or a helper process behind; nothing else to heal."]:
        console.print(sentence, markup=False, highlight=False)
    return 1 if unhealed(stack.state) else 0


def cmd_rotate_certs(args) -> int:
    """``rotation.rotate`` on the stack, its summary printed; exit 1 with the error when it stopped
    (the old CA stays trusted; running it again continues)."""
    from deployer import rotation
    from deployer.stack import Stack

    stack = Stack.attach(check_stack_name(args.name or load_spec(DEFAULT_SPEC).name))
    name = stack.state.name
    try:
        with console.status(f"[bold]rotating the certificates of {name}") as spinner:
            done = rotation.rotate(stack, progress=lambda msg: (log.info("%s", msg),
                                                                 spinner.update(f"[bold]{name}[/]: {msg}")))
    except TargetError as exc:
        console.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        return 1
    lines = [f"Rotated the certificates of {name}{' (a rotation continued)' if done['continued'] else ''}: CA "
             f"{', '.join(done['old_cas'])} -> {done['new_ca']}.",
             *(f"  {node}: serial {s['old']} -> {s['new']}" for node, s in done["serials"].items()),
             "  seconds: " + ", ".join(f"{step} {sec:.1f}" for step, sec in done["seconds"].items()),
             f"  configure's record: {done['record']}."]
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_backup(args) -> int:
    """``backups.take`` on the stack's leader; its account printed, exit 1 with the error when it failed."""
    from deployer import backups
    from deployer.stack import Stack

    stack = Stack.attach(check_stack_name(args.name or load_spec(DEFAULT_SPEC).name))
    if not stack.spec.backup.enabled:
        raise TargetError(f"stack {stack.state.name}'s spec turns backups off (backup.enabled: false)")
    with console.status(f"[bold]{args.type} backup of {stack.state.name} on its leader"):
        done = backups.take(stack, args.type)
    console.print(f"Backup of {stack.state.name}: {done}.", markup=False, highlight=False)
    return 0


def cmd_restore(args) -> int:
    """``restore.restore`` on the stack (every node's data replaced by the repository's), or with
    ``--into``, ``restore_into.restore_into`` (a new stack beside it)."""
    from deployer import restore, restore_into
    from deployer.stack import Stack

    stack = Stack.attach(check_stack_name(args.name or load_spec(DEFAULT_SPEC).name))
    if not stack.spec.backup.enabled:
        raise TargetError(f"stack {stack.state.name}'s spec turns backups off (backup.enabled: false)")
    if (args.spec or args.keep_on_failure) and not args.into:
        raise TargetError("--spec and --keep-on-failure go with --into")
    what = "the end of its archive" if args.latest else f"{args.to.isoformat()}"
    to = None if args.latest else args.to
    progress = functools.partial(log.info, "Restore: %s.")
    if args.into:
        log.info("Restoring %s to %s into a new stack %s; %s itself is only read.", stack.state.name, what, args.into,
                 stack.state.name)
        done = restore_into.restore_into(stack, args.into, to, load_spec(args.spec) if args.spec else None,
                                         keep=args.keep_on_failure, progress=progress)
        where, seconds = f"{stack.state.name} into {args.into}", done.seconds
    else:
        log.info("Restoring %s to %s: every node's data directory is replaced by the repository's.", stack.state.name,
                 what)
        where, seconds = stack.state.name, restore.restore(stack, to, progress=progress)
    console.print(f"Restored {where} to {what} in {seconds['total']:.0f} s: "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items() if k != "total"), markup=False,
                  highlight=False)
    return 0


#: Environment variables that mark a CI agent (Azure Pipelines sets TF_BUILD, most others CI).
AGENT_ENV = ("TF_BUILD", "CI")


def _target_without_state(name: str, target_name: str | None, environ: Mapping[str, str]) -> str:
    """The target to look for a stateless stack on: ``--target``, else local, except on a CI agent,
    where a wrong guess would report a stack on another target clean."""
    if target_name:
        return target_name
    agent = [var for var in AGENT_ENV if environ.get(var)]
    if agent:
        raise TargetError(f"no saved state of stack {name!r} (nothing under {StackState.path_for(name).parent}) and "
                          f"this looks like a CI agent ({agent[0]} is set): refusing to assume the local target; "
                          "pass --target local or --target azure")
    console.print(f"No saved state of stack {name}: assuming target local (pass --target to choose another).")
    return "local"


def cmd_down(args) -> int:
    name = check_stack_name(args.name or load_spec(DEFAULT_SPEC).name)
    if StackState.load(name) is None:
        # The state is gone (deleted, or a run died before writing it): look for what the target may
        # still hold under this name, so a stale stack is never unreachable.
        target_name = _target_without_state(name, args.target, os.environ)
        log.info("No saved state for %s; looking for leftovers of a %s stack of that name.", name, target_name)
        state = StackState(name=name, target=target_name, spec_path=str(DEFAULT_SPEC))
        # The spec under the stack's name: a target naming its resources after the spec (Azure's
        # rg-<name>) then looks for this stack's, not the default spec's.
        target = get(target_name)(load_spec(DEFAULT_SPEC).model_copy(update={"name": name}), state)
    else:
        state, target = _stack(name)
        if args.target and args.target != state.target:
            raise TargetError(f"stack {name!r} was deployed on target {state.target!r}, not {args.target!r}")
    left = stages.down(state, target)
    if left:
        console.print(f"[red]Teardown of {name} left {len(left)} thing(s) behind:")
        for line in left:
            console.print(f"  - {line}")
        return 1
    console.print(f"[green]Stack {name} is gone: no namespace, mount, container, cgroup, rule or process of it remains.")
    return 0


def _print_status(data: dict) -> None:
    stages_t = Table(title=f"stack {data['name']} ({data['target']})")
    for col in ("stage", "ok", "seconds"):
        stages_t.add_column(col)
    for stage, rec in data["stages"].items():
        stages_t.add_row(stage, "yes" if rec["ok"] else "[red]no", f"{rec['seconds']:.1f}")
    nodes_t = Table(title="cluster (Patroni)")
    for col in ("node", "address", "role", "state", "lag bytes", "timeline", "pending restart"):
        nodes_t.add_column(col)
    for n in data["nodes"]:
        pending = {True: "[red]yes", False: "no"}.get(n.get("pending_restart"), "?")
        nodes_t.add_row(n["name"], n["address"], str(n["role"]), n["state"], str(n["lag_bytes"]), str(n["timeline"]),
                        pending)
    lb_t = Table(title=f"load balancer {data['load_balancer']['frontend']}")
    lb_t.add_column("member")
    lb_t.add_column("healthy")
    for m in data["load_balancer"]["members"]:
        lb_t.add_row(m["node"], "yes" if m["healthy"] else "[red]no")
    for table in (stages_t, nodes_t, lb_t):
        console.print(table)
    for err in data.get("errors", []):
        console.print(f"[yellow]{err}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False, markup=False)])
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every HTTP request at INFO
    try:
        return {"up": cmd_up, "status": cmd_status, "down": cmd_down, "image": cmd_image,
                "break": cmd_break, "heal": cmd_heal, "rotate-certs": cmd_rotate_certs,
                "backup": cmd_backup, "restore": cmd_restore}[args.command](args)
    except (SpecError, TargetError) as exc:
        console.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: the state records where it stopped; `deployer up` resumes, "
                      "`deployer down` cleans up.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
