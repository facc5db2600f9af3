"""Running host commands for the local target: argument lists only, failures as TargetError."""

from __future__ import annotations

import logging
import subprocess

from deployer.targets.base import TargetError

log = logging.getLogger("deployer.local")


def run(argv: list[str], *, netns: str | None = None, check: bool = True, input: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``argv`` (inside network namespace ``netns`` if given) and capture its output.

    Raises TargetError naming the command and its stderr when it fails and ``check`` is set.
    """
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    log.debug("run: %s", " ".join(argv))
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise TargetError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        raise TargetError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def ok(argv: list[str], **kwargs) -> bool:
    """True when ``argv`` succeeds; never raises for a non-zero exit."""
    return run(argv, check=False, **kwargs).returncode == 0
