"""Faults with a guaranteed heal (Jepsen's nemesis): each is a context manager ``fault(stack, node)``
whose heal runs in ``finally``, also on failure and Ctrl-C.

Process faults go through SSH and are the same on every target; infrastructure faults call the
target's primitives (``crash_vm``/``start_vm``, ``isolate``/``heal``), which only targets with the
matching capability implement (``deployer.targets.base.CAPABILITIES``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import ContextManager

import requests

from deployer.inventory import role_defaults
from deployer.stack import Stack
from deployer.targets import TargetError

log = logging.getLogger("deployer.nemesis")

Fault = Callable[[Stack, str], ContextManager[None]]


@contextlib.contextmanager
def _injected(what: str, inject: Callable[[], object], heal: Callable[[], object]) -> Iterator[None]:
    log.info("Fault: %s.", what)
    try:
        inject()
        yield
    finally:
        log.info("Heal: %s ends.", what)
        heal()


def stopped_service(unit: str) -> Fault:
    """``systemctl stop UNIT`` on a node; heal: start it again."""
    def fault(stack: Stack, node: str) -> ContextManager[None]:
        return _injected(f"{unit} stopped on {node}",
                         lambda: stack.ssh(node, ["sudo", "systemctl", "stop", unit]),
                         lambda: stack.ssh(node, ["sudo", "systemctl", "start", unit]))
    return fault


def isolated(stack: Stack, node: str) -> ContextManager[None]:
    """Cut a node off the network (capability ``isolate``); heal: reconnect it."""
    return _injected(f"{node} isolated", lambda: stack.target.isolate(node), lambda: stack.target.heal(node))


def crashed_vm(stack: Stack, node: str) -> ContextManager[None]:
    """Power a VM off without shutdown (capability ``crash_vm``); heal: start it, until SSH answers."""
    return _injected(f"VM {node} crashed", lambda: stack.target.crash_vm(node), lambda: stack.target.start_vm(node))


@contextlib.contextmanager
def switchover(stack: Stack, node: str) -> Iterator[None]:
    """Planned switchover away from the leader ``node`` (Patroni ``POST /switchover``, authenticated;
    Patroni picks the healthiest replica). Nothing to heal: the cluster stays whole."""
    user = role_defaults()["patroni"]["patroni_restapi_username"]
    log.info("Fault: planned switchover away from %s.", node)
    resp = requests.post(f"{stack.target.patroni_url(node)}/switchover", json={"leader": node},
                         auth=(user, stack.secrets["rest_api"]), timeout=30)
    if resp.status_code != 200:
        raise TargetError(f"Patroni refused the switchover away from {node}: {resp.status_code} {resp.text.strip()}")
    yield
