"""Deadlines, never sleeps: one ``wait_until`` on tenacity and one multiplier for slow machines.

``PGHA_TIMEOUT_MULTIPLIER`` (default 1; the suites' ``--timeout-multiplier`` sets it for their
process, their workers and every deployer they start) scales every deadline. A timeout raises
WaitTimeout whose message names what was expected, what was last seen, and how long was waited.
"""

from __future__ import annotations

import os
import time
from typing import Callable, TypeVar

import tenacity

T = TypeVar("T")
MULTIPLIER_ENV = "PGHA_TIMEOUT_MULTIPLIER"


def multiplier() -> float:
    """The one factor every deadline is scaled by (read at each wait, so a suite option applies)."""
    return float(os.environ.get(MULTIPLIER_ENV, "1"))


class WaitTimeout(AssertionError):
    """A condition did not hold within its deadline."""


def wait_until(expected: str, probe: Callable[[], T], ok: Callable[[T], bool] = bool, *,
               timeout: float, interval: float = 0.5) -> T:
    """Call ``probe`` every ``interval`` s until ``ok(result)``; return that result.

    An exception from ``probe`` counts as "not yet" and is reported as the last thing seen.
    """
    deadline = timeout * multiplier()
    start = time.monotonic()
    seen: list[object] = ["nothing yet"]

    def attempt() -> tuple[bool, T | None]:
        try:
            value = probe()
        except Exception as exc:  # noqa: BLE001 - any failure of a probe means "not yet"
            seen[0] = f"{type(exc).__name__}: {exc}"
            return False, None
        seen[0] = value
        return ok(value), value

    def give_up(_state) -> None:
        raise WaitTimeout(f"expected {expected}; last seen: {seen[0]}; "
                          f"waited {time.monotonic() - start:.1f} s (deadline {deadline:g} s)")

    retrying = tenacity.Retrying(stop=tenacity.stop_after_delay(deadline), wait=tenacity.wait_fixed(interval),
                                 retry=tenacity.retry_if_result(lambda r: not r[0]), retry_error_callback=give_up)
    return retrying(attempt)[1]
