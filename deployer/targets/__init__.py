"""Targets behind one contract (``base``), found by name.

The registry maps a name to ``"module:Class"`` and imports only the target asked for, so a local
run never imports the Azure SDK (as testinfra's ``backend/__init__.py`` does for its backends).
"""

from __future__ import annotations

import importlib

from deployer.targets.base import Target, TargetError

TARGETS = {
    "local": "deployer.targets.local.target:LocalTarget",
    "azure": "deployer.targets.azure.target:AzureTarget",
}

__all__ = ["TARGETS", "Target", "TargetError", "get"]


def get(name: str) -> type[Target]:
    """The target class registered as ``name``; TargetError naming the known ones otherwise."""
    try:
        module, _, cls = TARGETS[name].partition(":")
    except KeyError:
        raise TargetError(f"unknown target {name!r}; known: {', '.join(sorted(TARGETS))}") from None
    return getattr(importlib.import_module(module), cls)
