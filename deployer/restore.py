"""``deployer restore``: the whole cluster brought back from its repository, in place, to the end of
the archive (``--latest``: every node's data lost) or to a point in time (``--to``: a dropped table,
a bad migration); or, with ``source``, another stack's cluster restored over this one's
(``deployer.restore_into``).

The steps, each waited for: Patroni stops on every node; the cluster's keys leave the DCS (Patroni
then sees no cluster and bootstraps one); every data directory is emptied; the first node's Patroni
bootstraps with a custom method, pgBackRest's restore (its recovery settings kept: the target and
``promote``), added to its configuration for this run only; a full backup of the restored cluster
is taken (the newest backup must be of its own timeline, not one taken after the target on the
history the restore abandoned); the other nodes start and are created from it (Patroni's replica
methods); the cluster converges and every node is healthy in
the load balancer. The new timeline's WAL is archived into the same stanza (PostgreSQL picks a
timeline the archive has not seen). What the restore cannot bring back, writes after the last
archived WAL, is the RPO; the drills measure it against the workload's history.

From another stack's repository (``source``): that stack's target opens its repository to this
stack's first node for the bootstrap only (``Target.repository_access``); the node gets a second
pgBackRest configuration naming it (``SOURCE_CONFIG``, the role's template, mode 0600), which the
restore and its WAL replay read, removed once the cluster runs. This stack's own stanza is deleted
before the bootstrap and created again after it (the restored cluster is the source's, another
system identifier), so the new timeline is archived here, never into the source's repository.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shlex
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from deployer import backups, inventory, patroni
from deployer.inventory import PATRONI_CONFIG
from deployer.stack import Stack
from deployer.targets import TargetError
from deployer.wait import wait_until

#: The custom bootstrap method's name in Patroni's configuration during a restore.
METHOD = "pgbackrest_restore"
#: How long the first node's bootstrap (restore, then WAL replay) may take here.
BOOTSTRAP_S = 900
#: On the first node, during a restore from another stack: pgBackRest's configuration for its repository.
SOURCE_CONFIG = "/etc/pgbackrest-source.conf"
#: How long another stack's repository may take to answer from the first node (Azure applies a new
#: network rule of a storage account within minutes).
SOURCE_READY_S = 300


def restore_command(stanza: str, to: dt.datetime | None, config: str | None = None) -> str:
    """pgBackRest's restore as Patroni's bootstrap runs it: to the end of the archive, or to ``to``
    (UTC) and then promote. ``config``: another configuration file (another stack's repository),
    which the WAL replay's restore_command then reads too."""
    target = [] if to is None else ["--type=time", f"--target={to.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S.%f+00}",
                                    "--target-action=promote"]
    where = [] if config is None else [
        f"--config={config}",
        f'--recovery-option=restore_command=pgbackrest --config={config} --stanza={stanza} archive-get %f "%p"']
    return shlex.join(["pgbackrest", *where[:1], f"--stanza={stanza}", "--delta", *target, *where[1:], "restore"])


@contextlib.contextmanager
def _source_repository(stack: Stack, node: str, source: Stack) -> Iterator[None]:
    """``source``'s repository open to ``node`` (``Target.repository_access``) and named by
    ``SOURCE_CONFIG`` there, until the block ends (the file, which holds the source's key, goes then
    whatever happened)."""
    with source.target.repository_access(stack.target, node) as repo:
        text = inventory.pgbackrest_conf(stack.spec, repo, source.spec.stanza, managed="deployer restore --into")
        try:
            stack.ssh(node, f"sudo install -m 0600 -o postgres -g postgres /dev/stdin {SOURCE_CONFIG}", input=text)
            info = ["sudo", "-u", "postgres", "pgbackrest", f"--config={SOURCE_CONFIG}",
                    f"--stanza={source.spec.stanza}", "info"]
            wait_until(f"{source.state.name}'s repository to answer `pgbackrest info` on {node}",
                       lambda: stack.ssh(node, info, check=False, timeout=60),
                       lambda done: done.returncode == 0 and "status: ok" in done.stdout,
                       timeout=SOURCE_READY_S, interval=5)
            yield
        finally:
            stack.ssh(node, ["sudo", "rm", "-f", SOURCE_CONFIG], check=False)


def _with_method(command: str) -> str:
    """A Python program, run on the node with Patroni's interpreter, adding the custom bootstrap
    method to Patroni's configuration (a copy of it kept beside it for ``_without_method``)."""
    return (f"import shutil, yaml; p = {PATRONI_CONFIG!r}; shutil.copy2(p, p + '.before-restore'); "
            f"c = yaml.safe_load(open(p)); c['bootstrap']['method'] = {METHOD!r}; "
            f"c['bootstrap'][{METHOD!r}] = {{'command': {command!r}, 'keep_existing_recovery_conf': True, "
            f"'no_params': True}}; open(p, 'w').write(yaml.safe_dump(c))")


def _literal(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _reads_own_archive(stack: Stack, nodes: list[str]) -> None:
    """TargetError naming every node whose restore_command still reads ``SOURCE_CONFIG`` (Patroni
    drops the one the bootstrap left in postgresql.auto.conf once it manages recovery itself)."""
    stale = {n: cmd for n in nodes for (cmd,) in stack.psql(n, "SHOW restore_command") if SOURCE_CONFIG in cmd}
    if stale:
        raise TargetError(f"restore_command still reads the source repository's configuration on {', '.join(stale)}: "
                          f"{next(iter(stale.values()))!r}")


def restore(stack: Stack, to: dt.datetime | None = None, progress: Callable[[str], None] = print,
            source: Stack | None = None) -> dict[str, float]:
    """Restore the stack's cluster from its repository, or from ``source``'s (see the module
    docstring); the seconds each step took. ``to``: the point in time (None: the end of the archive)."""
    spec, seconds, started = stack.spec, {}, time.monotonic()
    nodes = [n.name for n in spec.nodes]
    first, data = nodes[0], inventory.data_dir(spec)

    def step(name: str, work: Callable[[], object]) -> None:
        progress(name)
        began = time.monotonic()
        work()
        seconds[name] = round(time.monotonic() - began, 1)

    def on_every(argv: list[str]) -> None:
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda n: stack.ssh(n, argv, timeout=180), nodes))

    step("stopping Patroni on every node", lambda: on_every(["sudo", "systemctl", "stop", "patroni"]))
    step("removing the cluster from the DCS",
         lambda: stack.etcdctl(first, "del", "--prefix", f"/service/{spec.patroni.scope}/", parse=False))
    step("emptying every data directory", lambda: on_every(["sudo", "find", data, "-mindepth", "1", "-delete"]))
    own = ["sudo", "-u", "postgres", "pgbackrest", f"--stanza={spec.stanza}"]
    if source:
        step(f"deleting stanza {spec.stanza} from {stack.state.name}'s own repository (the cluster it held is gone)",
             lambda: stack.ssh(first, f"{shlex.join(own)} stop && {shlex.join(own)} --force stanza-delete; "
                                      f"done=$?; {shlex.join(own)} start; exit $done", timeout=600))
    command = restore_command(source.spec.stanza if source else spec.stanza, to, SOURCE_CONFIG if source else None)
    with _source_repository(stack, first, source) if source else contextlib.nullcontext():
        step(f"bootstrapping {first} from {(source or stack).state.name}'s repository ({command})", lambda: (
            stack.ssh(first, ["sudo", "/opt/patroni/bin/python", "-c", _with_method(command)]),
            stack.ssh(first, ["sudo", "systemctl", "start", "patroni"]),
            wait_until(f"{first} to lead the restored cluster, running (GET /cluster)", stack.cluster,
                       lambda ms: any(m.name == first and m.role == "leader" and m.state == "running" for m in ms),
                       timeout=BOOTSTRAP_S, interval=2)))
    step("restoring Patroni's configuration as the role renders it", lambda: stack.ssh(
        first, f"sudo cp {PATRONI_CONFIG}.before-restore {PATRONI_CONFIG} && sudo rm {PATRONI_CONFIG}.before-restore"))
    if source:
        # Patroni set its own users' passwords (post_bootstrap); the application's is the source's still.
        step(f"setting the application user's password to {stack.state.name}'s", lambda: stack.ssh(
            first, "sudo -u postgres psql -XAtq -v ON_ERROR_STOP=1 -d postgres",
            input=f"ALTER ROLE app PASSWORD {_literal(stack.secrets['app'])};\n"))
        step(f"creating stanza {spec.stanza} in {stack.state.name}'s repository for the restored cluster",
             lambda: stack.ssh(first, [*own, "stanza-create"], timeout=600))
    # The others are created from the repository's newest backup: it must be of the restored
    # cluster's own timeline, not one taken after the target on the history the restore abandoned.
    step(f"taking a full backup of the restored cluster on {first}", lambda: backups.take(stack, "full"))
    step("starting the other nodes (created from the repository)",
         lambda: [stack.ssh(n, ["sudo", "systemctl", "start", "patroni"]) for n in nodes[1:]])
    step("waiting for the cluster to converge", lambda: wait_until(
        "one leader, every replica streaming with lag 0, one timeline", stack.cluster,
        lambda m: patroni.healthy(m, len(nodes)) and len({x.timeline for x in m}) == 1, timeout=BOOTSTRAP_S, interval=2))
    step("waiting for every node to be healthy in the load balancer", stack.target.wait_pool_healthy)
    if source:
        step(f"checking that no node replays WAL from {source.state.name}'s repository",
             lambda: _reads_own_archive(stack, nodes))
    seconds["total"] = round(time.monotonic() - started, 1)
    return seconds
