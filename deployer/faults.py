"""Faults with a guaranteed heal: each is a context manager whose heal runs in ``finally``,
also on failure and Ctrl-C. Process faults go through SSH and are the same on every target;
infrastructure faults call the target's primitives (``crash_vm``/``start_vm``, ``isolate``/``heal``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import requests

from deployer.inventory import role_defaults
from deployer.stack import Stack
from deployer.targets import TargetError

log = logging.getLogger("deployer.faults")


@contextlib.contextmanager
def stopped_service(stack: Stack, node: str, unit: str) -> Iterator[None]:
    """``systemctl stop`` a unit on a node; heal: start it again."""
    log.info("Fault: stopping %s on %s.", unit, node)
    try:
        stack.ssh(node, ["sudo", "systemctl", "stop", unit])
        yield
    finally:
        log.info("Heal: starting %s on %s.", unit, node)
        stack.ssh(node, ["sudo", "systemctl", "start", unit])


@contextlib.contextmanager
def _injected(inject, heal, node: str) -> Iterator[None]:
    try:
        inject(node)
        yield
    finally:
        heal(node)


def isolated(stack: Stack, node: str):
    """Cut a node off the network (target capability ``isolate``); heal: reconnect it."""
    return _injected(stack.target.isolate, stack.target.heal, node)


def crashed_vm(stack: Stack, node: str):
    """Power a VM off without shutdown (target capability ``crash_vm``); heal: start it again."""
    return _injected(stack.target.crash_vm, stack.target.start_vm, node)


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
