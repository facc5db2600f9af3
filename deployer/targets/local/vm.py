"""A local VM: a systemd-nspawn container booted with systemd, on an overlay of the cached image,
in its own network namespace, started from its own cgroup.

The host's PID 1 is not systemd and cgroups are hybrid v1+v2: containers started from one cgroup
share it and their systemd instances fight. So each launcher moves itself into
``<own cgroup>/<stack>.<node>`` in both the ``systemd`` and ``unified`` hierarchies before it execs
nspawn; teardown removes those cgroups, deepest first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
from pathlib import Path

from deployer.targets.base import TargetError
from deployer.targets.local.cmd import ok, run
from deployer.wait import WaitTimeout, wait_until

CGROUP_ROOT = Path("/sys/fs/cgroup")
HIERARCHIES = ("systemd", "unified")


def _own_cgroup(hierarchy: str) -> str:
    key = "name=systemd" if hierarchy == "systemd" else ""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == key:
            return path.lstrip("/")
    return ""


class VM:
    """One container. ``root`` is the overlay mount point; the state dir keeps upper/work and logs."""

    def __init__(self, stack: str, node: str, netns: str, image: Path, directory: Path):
        self.stack, self.node, self.netns, self.image = stack, node, netns, image
        self.dir = directory
        self.root, self.upper, self.work = directory / "root", directory / "upper", directory / "work"
        self.console_log = directory / "console.log"

    # ----- filesystem -----

    def cgroups(self) -> list[Path]:
        """This VM's cgroup in each hierarchy."""
        return [CGROUP_ROOT / h / _own_cgroup(h) / f"{self.stack}.{self.node}" for h in HIERARCHIES
                if (CGROUP_ROOT / h).is_dir()]

    def mounted(self) -> bool:
        return any(line.split()[1] == str(self.root) for line in Path("/proc/mounts").read_text().splitlines())

    def mount(self) -> None:
        """Mount the overlay (lower = image, upper/work kept per VM, so a restart keeps its disk)."""
        for d in (self.root, self.upper, self.work):
            d.mkdir(parents=True, exist_ok=True)
        if not self.mounted():
            run(["mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={self.image},upperdir={self.upper},workdir={self.work}", str(self.root)])

    def unmount(self) -> None:
        if self.mounted() and not ok(["umount", str(self.root)]):
            run(["umount", "-l", str(self.root)])

    def personalise(self, admin_user: str, authorized_key: str) -> str:
        """Hostname, a fresh SSH host key and the admin's authorized key; returns the host public key."""
        etc = self.root / "etc"
        (etc / "hostname").write_text(self.node + "\n")
        (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.node}\n")
        key = etc / "ssh" / "ssh_host_ed25519_key"
        if not key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{self.node}", "-f", str(key)])
        home = self.root / "home" / admin_user
        uid, gid = next((int(f[2]), int(f[3])) for f in (l.split(":") for l in (etc / "passwd").read_text().splitlines())
                        if f[0] == admin_user)
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(authorized_key + "\n")
        for path in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(path, uid, gid)
        (ssh_dir / "authorized_keys").chmod(0o600)
        return " ".join(key.with_suffix(".pub").read_text().split()[:2])

    # ----- processes -----

    def launcher_pid(self) -> int | None:
        """The systemd-nspawn process of this VM, found by its command line."""
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"systemd-nspawn") and str(self.root).encode() in argv:
                return int(proc.name)
        return None

    def init_pid(self) -> int | None:
        """PID (on the host) of the container's systemd."""
        launcher = self.launcher_pid()
        if not launcher:
            return None
        for task in Path(f"/proc/{launcher}/task").iterdir():
            children = (task / "children").read_text().split()
            if children:
                return int(children[0])
        return None

    def running(self) -> bool:
        return self.init_pid() is not None

    def start(self) -> None:
        """Boot the container in the background, from its own cgroup; console output to console.log."""
        if self.launcher_pid():
            return
        groups = self.cgroups()
        for group in groups:
            group.mkdir(parents=True, exist_ok=True)

        def enter_own_cgroup():
            for group in groups:
                (group / "cgroup.procs").write_text(str(os.getpid()))

        # CAP_NET_ADMIN, as root has it on a VM: scoped to the VM's own namespace (a stopping etcd
        # member drains its clients with nftables and ss --kill, the etcd role's etcd_drain_table).
        argv = ["systemd-nspawn", "-q", "-D", str(self.root), "-M", self.node, "--register=no", "--keep-unit",
                f"--network-namespace-path=/run/netns/{self.netns}", "--capability=CAP_NET_ADMIN", "--console=read-only",
                "--link-journal=no", "--resolv-conf=off", "--timezone=off", "-b"]
        with open(self.console_log, "ab") as log:
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             preexec_fn=enter_own_cgroup, start_new_session=True)

    def kill(self) -> None:
        """Crash: SIGKILL the container's init (every process in it dies at once)."""
        pid = self.init_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)

    def stop(self, timeout: float = 30) -> None:
        """Orderly poweroff (SIGTERM to nspawn), SIGKILL after ``timeout``; returns once it is gone."""
        launcher = self.launcher_pid()
        if not launcher:
            return
        os.kill(launcher, signal.SIGTERM)
        if not _wait_gone(launcher, timeout):
            self.kill()
            os.kill(launcher, signal.SIGKILL)
            if not _wait_gone(launcher, 10):
                raise TargetError(f"{self.node}: systemd-nspawn (pid {launcher}) survived SIGKILL")

    def remove_cgroups(self, timeout: float = 15) -> None:
        """Remove this VM's cgroups deepest first (the container's systemd leaves children behind).
        One still holding a process (an exiting one stays listed until the kernel releases it: seen
        as EBUSY on journald's group right after a poweroff) has it killed and is retried until
        ``timeout``."""
        for group in self.cgroups():
            if group.exists():
                for sub in [*sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), group]:
                    wait_until(f"cgroup {sub} to be removed (its processes killed)", lambda s=sub: _remove_cgroup(s),
                               timeout=timeout, interval=0.2)


def _remove_cgroup(path: Path) -> bool:
    """rmdir ``path``; on EBUSY, SIGKILL every process it lists and say False (try again)."""
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        return False
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    def gone() -> bool:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return not Path(f"/proc/{pid}").exists() or _zombie(pid)
    try:
        wait_until(f"process {pid} to exit", gone, timeout=timeout, interval=0.2)
        return True
    except WaitTimeout:
        return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True
