"""The workload (Jepsen's client) as a process of its own: Locust, headless, started under a
vantage prefix (where clients are), writing uniquely keyed rows through the frontend and recording
every operation in a history (``load/history.py``). Locust monkey-patches with gevent on import, so
it never runs inside the pytest process. The run is bounded by ``duration_s`` and always stopped on
exit. This module knows DSNs and directories, not stacks or targets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from deployer.paths import LOCUSTFILE
from deployer.wait import wait_until
from load.history import Op, read_history

log = logging.getLogger("load.runner")


class Workload:
    """A running Locust process and the history it writes."""

    def __init__(self, proc: subprocess.Popen, history_dir: Path, log_file: Path):
        self.proc, self.history_dir, self.log_file = proc, history_dir, log_file

    def history(self) -> list[Op]:
        """Every operation recorded so far, by start time."""
        return read_history(self.history_dir)

    def ok_writes(self) -> int:
        """Acknowledged writes so far."""
        return sum(1 for op in self.history() if op.kind == "write" and op.outcome == "ok")

    def wait_for_writes(self, count: int, timeout: float = 30) -> None:
        """Block until ``count`` more writes have been acknowledged (the workload is really flowing)."""
        target = self.ok_writes() + count
        wait_until(f"{target} acknowledged writes from the workload", self.ok_writes, lambda n: n >= target,
                   timeout=timeout, interval=0.25)


@contextlib.contextmanager
def running(vantage: list[str], write_dsn: str, read_dsn: str, run_dir: Path, *, users: int = 4,
            writes_per_s: float = 20, duration_s: float = 180) -> Iterator[Workload]:
    """Start the workload under the command prefix ``vantage``, writing through ``write_dsn`` and
    reading through ``read_dsn`` (DSNs hold passwords: they travel in the environment only), its
    history in ``run_dir/history``; on exit stop it (SIGTERM, then SIGKILL) and wait until it is gone."""
    history_dir = run_dir / "history"
    history_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PGHA_WRITE_DSN": write_dsn, "PGHA_READ_DSN": read_dsn, "PGHA_HISTORY_DIR": str(history_dir),
           "PGHA_RUN_ID": run_dir.name, "PGHA_WRITES_PER_S": str(writes_per_s)}
    argv = [*vantage, sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "-u", str(users), "-r", str(users), "-t", f"{int(duration_s)}s", "--only-summary", "--stop-timeout", "5"]
    log_file = run_dir / "locust.log"
    log.info("Workload: %d Locust users, %g writes/s, at most %d s.", users, writes_per_s, duration_s)
    started = time.monotonic()
    with open(log_file, "w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield Workload(proc, history_dir, log_file)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.info("Workload stopped after %.0f s (exit %s).", time.monotonic() - started, proc.returncode)
