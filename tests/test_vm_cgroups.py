"""Teardown of a VM's cgroups: a group that still lists a process right after the poweroff (EBUSY)
has it killed and is removed on a later try; any other error is not swallowed."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from deployer.targets.local import vm


def test_a_busy_cgroup_has_its_processes_killed_then_is_removed(tmp_path, monkeypatch):
    group = tmp_path / "payload" / "system.slice" / "systemd-journald.service"
    group.mkdir(parents=True)
    straggler = subprocess.Popen(["sleep", "60"])
    (group / "cgroup.procs").write_text(f"{straggler.pid}\n")
    busy = {"left": 1}
    real_rmdir = Path.rmdir

    def rmdir(path):
        if path == group and busy["left"]:
            busy["left"] -= 1
            raise OSError(errno.EBUSY, "Device or resource busy", str(path))
        (path / "cgroup.procs").unlink(missing_ok=True)
        real_rmdir(path)

    monkeypatch.setattr(Path, "rmdir", rmdir)
    assert vm._remove_cgroup(group) is False, "busy: not removed yet"
    assert straggler.wait(timeout=5) == -9, "the process it listed was killed"
    assert vm._remove_cgroup(group) is True and not group.exists()
    assert vm._remove_cgroup(group) is True, "a group gone already counts as removed"


def test_another_error_is_raised(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "rmdir", lambda path: (_ for _ in ()).throw(OSError(errno.EACCES, "denied", str(path))))
    with pytest.raises(PermissionError):
        vm._remove_cgroup(tmp_path)
