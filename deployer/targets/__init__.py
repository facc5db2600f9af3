"""Targets behind one contract (see ``base``): ``local`` (default) and ``azure``."""

from deployer.targets.base import Target, TargetError, get

__all__ = ["Target", "TargetError", "get"]
