"""``deployer restore``: the whole cluster brought back from its repository, in place, to the end of
the archive (``--latest``: every node's data lost) or to a point in time (``--to``: a dropped table,
a bad migration).

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
"""

from __future__ import annotations

import datetime as dt
import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from deployer import backups, inventory, patroni
from deployer.inventory import PATRONI_CONFIG
from deployer.stack import Stack
from deployer.wait import wait_until

#: The custom bootstrap method's name in Patroni's configuration during a restore.
METHOD = "pgbackrest_restore"
#: How long the first node's bootstrap (restore, then WAL replay) may take here.
BOOTSTRAP_S = 900


def restore_command(stanza: str, to: dt.datetime | None) -> str:
    """pgBackRest's restore as Patroni's bootstrap runs it: to the end of the archive, or to ``to``
    (UTC) and then promote."""
    target = [] if to is None else ["--type=time", f"--target={to.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S.%f+00}",
                                    "--target-action=promote"]
    return shlex.join(["pgbackrest", f"--stanza={stanza}", "--delta", *target, "restore"])


def _with_method(command: str) -> str:
    """A Python program, run on the node with Patroni's interpreter, adding the custom bootstrap
    method to Patroni's configuration (a copy of it kept beside it for ``_without_method``)."""
    return (f"import shutil, yaml; p = {PATRONI_CONFIG!r}; shutil.copy2(p, p + '.before-restore'); "
            f"c = yaml.safe_load(open(p)); c['bootstrap']['method'] = {METHOD!r}; "
            f"c['bootstrap'][{METHOD!r}] = {{'command': {command!r}, 'keep_existing_recovery_conf': True, "
            f"'no_params': True}}; open(p, 'w').write(yaml.safe_dump(c))")


def restore(stack: Stack, to: dt.datetime | None = None, progress: Callable[[str], None] = print) -> dict[str, float]:
    """Restore the stack's cluster from its repository (see the module docstring); the seconds each
    step took. ``to``: the point in time (None: the end of the archive)."""
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
    command = restore_command(spec.stanza, to)
    step(f"bootstrapping {first} from the repository ({command})", lambda: (
        stack.ssh(first, ["sudo", "/opt/patroni/bin/python", "-c", _with_method(command)]),
        stack.ssh(first, ["sudo", "systemctl", "start", "patroni"]),
        wait_until(f"{first} to lead the restored cluster, running (GET /cluster)", stack.cluster,
                   lambda ms: any(m.name == first and m.role == "leader" and m.state == "running" for m in ms),
                   timeout=BOOTSTRAP_S, interval=2)))
    step("restoring Patroni's configuration as the role renders it", lambda: stack.ssh(
        first, f"sudo cp {PATRONI_CONFIG}.before-restore {PATRONI_CONFIG} && sudo rm {PATRONI_CONFIG}.before-restore"))
    # The others are created from the repository's newest backup: it must be of the restored
    # cluster's own timeline, not one taken after the target on the history the restore abandoned.
    step(f"taking a full backup of the restored cluster on {first}", lambda: backups.take(stack, "full"))
    step("starting the other nodes (created from the repository)",
         lambda: [stack.ssh(n, ["sudo", "systemctl", "start", "patroni"]) for n in nodes[1:]])
    step("waiting for the cluster to converge", lambda: wait_until(
        "one leader, every replica streaming with lag 0, one timeline", stack.cluster,
        lambda m: patroni.healthy(m, len(nodes)) and len({x.timeline for x in m}) == 1, timeout=BOOTSTRAP_S, interval=2))
    step("waiting for every node to be healthy in the load balancer", stack.target.wait_pool_healthy)
    seconds["total"] = round(time.monotonic() - started, 1)
    return seconds
