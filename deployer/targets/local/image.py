"""The local target's VM image: one Debian 12 root filesystem, baked once, cached by content.

Every local VM boots an overlay whose lower layer is the root filesystem returned by
:func:`ensure_image`. The image holds everything the Ansible roles expect to find installed, but
nothing that identifies a VM and nothing that starts by itself:

* Debian bookworm (debootstrap ``minbase`` plus :data:`BASE_PACKAGES`), the caller's Debian
  packages with security updates applied, and a virtual environment ``/opt/patroni`` holding the
  caller's pip requirements (``patroni`` and ``patronictl`` are linked into ``/usr/local/bin``).
* No PostgreSQL cluster, and ``postgresql``, ``etcd`` and ``haproxy`` *disabled* (not masked: the
  roles configure them and enable them). Timers that would wake up in a test (apt, dpkg backup,
  e2scrub, fstrim, man-db) and units that only slow a container's boot
  (``systemd-networkd-wait-online``, ``getty@tty1``) are masked; ``ssh.service`` is enabled.
* No identity: no SSH host keys (sshd refuses to start until the deployer writes one per VM), an
  empty ``/etc/machine-id`` (systemd makes one per boot), an empty ``/etc/hostname`` and
  ``/etc/resolv.conf``, and an ``/etc/hosts`` naming only localhost (the deployer writes all three
  per VM).
* One admin user (:func:`ensure_image`'s ``admin_user``): no password (key login only), sudo
  without a password, an empty ``~/.ssh`` (0700). Root is locked and may not log in over SSH;
  passwords are refused by sshd.
* The host's apt sources for bookworm (main, updates, security: whatever the host has) and the
  host's apt ``Acquire`` settings, so apt inside a VM uses the host's mirrors. No apt lists, no
  documentation, man pages or translations (``/usr/share/doc/*/copyright`` stays).

Cache layout under ``cache_root`` (default :data:`DEFAULT_CACHE_ROOT`, outside any checkout)::

    <key>/rootfs      the image; never modified once READY exists (use it as a read-only lower)
    <key>/READY       JSON: the inputs, package and wheel versions, step durations, size
    <key>/bake.log    every command of the bake and its output
    <key>.failed.log  the log of the last failed bake of that key, kept as evidence
    .<key>.lock       serialises bakes of one key across processes

The key (:func:`image_key`) is a hash of everything that goes into the image except the mirror
contents, so an unchanged recipe is a cache hit and any change bakes a new image beside the old
one (old images are never deleted here). A bake works in ``.<key>.bake-*`` beside the final
directory and renames it into place only after READY is written, so a reader sees either nothing
or a complete image. Whatever ends a bake early (an error, Ctrl-C) unmounts what it mounted,
deletes its work directory and leaves no READY. Needs root, ``debootstrap``, and a host Python
3.11 with pip: the chroot sees neither the host's pip configuration nor its certificates, so the
wheels are built by the host's pip (``pip wheel``: some of Patroni's dependencies ship only source
distributions, so ``pip download --only-binary`` cannot work) and installed offline in the chroot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from deployer.targets.base import MissingPrerequisite, TargetError
from deployer.targets.local.wheels import IMAGE_PYTHON, image_python, wheelhouse

RECIPE_VERSION = 1
"""Bump when the bake changes in a way the hashed texts below do not show."""

SUITE = "bookworm"
VENV = "/opt/patroni"
DEFAULT_CACHE_ROOT = Path("/var/cache/pgha/images")
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "sudo", "python3",
                 "python3-venv", "iproute2", "procps", "ca-certificates", "iputils-ping",
                 "netcat-openbsd", "less")
MIN_FREE_BYTES = 3 << 30

_POLICY_RC_D = "#!/bin/sh\n# pgha image bake: no service starts while packages are installed\nexit 101\n"

_DPKG_NODOC = """\
# pgha image: no documentation, man pages or translations (copyright files stay)
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/lintian/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
"""

_SSHD_CONFIG = "# pgha image\nPermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"

_CONFIGURE_SCRIPT = r"""
set -eu
admin=$1

# Patroni creates and owns the cluster; the Ansible roles configure and enable the services.
pg_lsclusters --no-header 2>/dev/null | while read -r version name _; do
    pg_dropcluster --stop "$version" "$name"
done
if [ -f /etc/postgresql-common/createcluster.conf ]; then
    sed -i 's/^#* *create_main_cluster *=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
fi
for unit in postgresql.service etcd.service haproxy.service; do
    if [ -e "/lib/systemd/system/$unit" ]; then systemctl disable --quiet "$unit"; fi
done
systemctl mask --quiet apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer \
    systemd-networkd-wait-online.service getty@tty1.service
systemctl enable --quiet ssh.service
for tool in patroni patronictl; do
    if [ -x "/opt/patroni/bin/$tool" ]; then ln -sf "/opt/patroni/bin/$tool" "/usr/local/bin/$tool"; fi
done

# Users: the admin logs in with a key and uses sudo; root does not log in.
useradd --create-home --shell /bin/bash "$admin"
usermod --password '*' "$admin"
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$admin" > "/etc/sudoers.d/$admin"
chmod 0440 "/etc/sudoers.d/$admin"
visudo -cqf "/etc/sudoers.d/$admin"
install -d -m 0700 -o "$admin" -g "$admin" "/home/$admin/.ssh"
passwd --quiet --lock root

# No identity: the deployer writes host keys, hostname, hosts and resolv.conf per VM.
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
: > /etc/hostname
: > /etc/resolv.conf
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts

# Small: no caches, lists, logs, documentation.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/lib/dpkg/*-old /tmp/* /var/tmp/* /root/.cache
find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/lintian/*
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
find /var/log -type f -exec truncate -s 0 {} +
"""

_KEEP_CONFFILES = ("-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold")
_CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ADMIN_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+(?:[=:][A-Za-z0-9.+~:-]+)?")
# one-line option -> deb822 field, where they differ (apt compares field names case-insensitively)
_LIST_OPTIONS = {"arch": "Architectures", "lang": "Languages", "target": "Targets"}


class ImageError(TargetError):
    """The image could not be baked; the message names the step, the command and the log."""


# --------------------------------------------------------------------------------------------
# The host's apt sources


@dataclasses.dataclass(frozen=True)
class AptSource:
    """One ``deb`` entry of an apt sources file, for a single URI.

    ``options`` holds the entry's other fields as ``(name, value)`` pairs in deb822 form (``Signed-By``,
    ``Architectures``, ...), whatever format the entry was written in; a multi-line value (an inline
    key) keeps its lines, with ``.`` for an empty one. ``origin`` is the file it came from.
    """

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()
    origin: str = ""

    def option(self, name: str) -> str | None:
        """The value of field ``name`` (case-insensitive), or None."""
        return next((v for k, v in self.options if k.lower() == name.lower()), None)


@dataclasses.dataclass(frozen=True)
class DebianSources:
    """The host's sources for one Debian release.

    ``main`` carries the release's own suite (``bookworm``) and is what debootstrap uses;
    ``security`` carries ``<suite>-security`` when the host has it; ``entries`` are all entries for
    the release and its ``-updates``/``-security``/... suites (other suites dropped), as they are
    written into the image.
    """

    main: AptSource
    security: AptSource | None
    entries: tuple[AptSource, ...]


def host_apt_source_files(etc_apt: Path = Path("/etc/apt")) -> list[Path]:
    """The sources files apt reads, in apt's order: ``sources.list``, then ``sources.list.d/*.list``
    and ``*.sources`` by name (apt ignores other names, such as ``*.disabled``)."""
    parts = etc_apt / "sources.list.d"
    found = [etc_apt / "sources.list"] if (etc_apt / "sources.list").is_file() else []
    if parts.is_dir():
        found += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources") and p.is_file())
    return found


def parse_apt_sources(path: Path) -> list[AptSource]:
    """The enabled ``deb`` entries of one sources file, one per URI.

    ``*.sources`` files are read as deb822 stanzas (comments, continuation lines, ``Enabled: no``),
    anything else as one-line entries (``deb [opt=value ...] uri suite component...``, ``#`` comments).
    ``deb-src`` entries are skipped.
    """
    text = path.read_text()
    return _parse_deb822(text, str(path)) if path.suffix == ".sources" else _parse_one_line(text, str(path))


def _parse_one_line(text: str, origin: str) -> list[AptSource]:
    entries = []
    for line in text.splitlines():
        m = re.match(r"\s*deb\s+(?:\[([^\]]*)\]\s*)?(\S+)\s+(\S+)((?:\s+\S+)*)\s*$", line.split("#", 1)[0])
        if m:
            options = []
            for item in (m[1] or "").split():
                name, _, value = item.partition("=")
                options.append((_LIST_OPTIONS.get(name.lower()) or "-".join(w.capitalize() for w in name.split("-")),
                                value.replace(",", " ") if name.lower() in _LIST_OPTIONS else value))
            entries.append(AptSource(m[2], (m[3],), tuple(m[4].split()), tuple(options), origin))
    return entries


def _parse_deb822(text: str, origin: str) -> list[AptSource]:
    entries = []
    for stanza in re.split(r"\n[ \t]*\n", "\n".join(l for l in text.splitlines() if not l.startswith("#"))):
        fields: dict[str, tuple[str, str]] = {}   # lower name -> (name as written, value)
        name = None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and name:
                fields[name.lower()] = (name, fields[name.lower()][1] + "\n" + line.strip())
            elif ":" in line:
                name, _, value = line.partition(":")
                name = name.strip()
                fields[name.lower()] = (name, value.strip())
        get = lambda key: fields.get(key, ("", ""))[1].split()  # noqa: E731
        if "deb" not in get("types") or (get("enabled") or ["yes"])[0].lower() == "no":
            continue
        options = tuple((n, v) for k, (n, v) in fields.items()
                        if k not in ("types", "uris", "suites", "components", "enabled"))
        entries += [AptSource(uri, tuple(get("suites")), tuple(get("components")), options, origin)
                    for uri in get("uris")]
    return entries


def debian_sources(sources: Iterable[AptSource], suite: str = SUITE) -> DebianSources:
    """Pick the entries for Debian ``suite`` out of the host's sources.

    Raises ImageError when no http(s)/file entry carries ``suite`` itself with component ``main``:
    without it there is no mirror to debootstrap from.
    """
    family = [dataclasses.replace(s, suites=tuple(x for x in s.suites if x == suite or x.startswith(suite + "-")))
              for s in sources]
    family = [s for s in family if s.suites]
    main = next((s for s in family if suite in s.suites and "main" in s.components
                 and s.uri.split(":", 1)[0] in ("http", "https", "file")), None)
    if main is None:
        raise ImageError(f"the host's apt sources have no http(s) entry for Debian {suite} main: "
                         f"the image is bootstrapped from the host's Debian mirror")
    security = next((s for s in family if f"{suite}-security" in s.suites), None)
    return DebianSources(main, security, tuple(family))


def render_deb822(entries: Iterable[AptSource]) -> str:
    """``entries`` as a deb822 ``.sources`` file (one stanza per entry, ``# from <origin>`` above)."""
    stanzas = []
    for s in entries:
        lines = [f"# from {s.origin}"] if s.origin else []
        lines += ["Types: deb", f"URIs: {s.uri}", f"Suites: {' '.join(s.suites)}",
                  f"Components: {' '.join(s.components)}"]
        for name, value in s.options:
            first, *rest = value.split("\n")
            lines.append(f"{name}: {first}".rstrip() + "".join(f"\n {line}" for line in rest))
        stanzas.append("\n".join(lines) + "\n")
    return "\n".join(stanzas)


# --------------------------------------------------------------------------------------------
# The key and the cache


def _normalised(debian_packages: Iterable[str], pip_requirements: Iterable[str]) -> tuple[list[str], list[str]]:
    debian = sorted({p.strip() for p in debian_packages if p.strip()})
    pip = sorted({r.strip() for r in pip_requirements if r.strip()})
    bad = [p for p in debian if not _DEBIAN_PACKAGE.fullmatch(p)] + [r for r in pip if r.startswith("-")]
    if bad:
        raise ValueError(f"not a Debian package name or pip requirement: {', '.join(bad)}")
    return debian, pip


def image_key(debian_packages: Iterable[str], pip_requirements: Iterable[str], admin_user: str) -> str:
    """The cache key of the image these inputs bake: 16 hex digits of a sha256.

    It covers the packages and requirements (sorted and deduplicated, so their order does not
    matter), ``admin_user``, :data:`RECIPE_VERSION`, :data:`SUITE`, :data:`BASE_PACKAGES`, the venv
    path and every text the bake writes or runs in the image. It does not cover the mirror's
    contents or the host's apt configuration copied into the image: a cached image keeps the package
    versions of the day it was baked (READY lists them).
    Raises ValueError for an admin user or package name that is not plain (no option-like ``-x``).
    """
    if not _ADMIN_USER.fullmatch(admin_user):
        raise ValueError(f"admin user {admin_user!r} is not a plain user name ([a-z_][a-z0-9_-]*, at most 32)")
    debian, pip = _normalised(debian_packages, pip_requirements)
    inputs = {"recipe": RECIPE_VERSION, "suite": SUITE, "base": sorted(BASE_PACKAGES), "venv": VENV,
              "python": list(IMAGE_PYTHON), "debian": debian, "pip": pip, "admin_user": admin_user,
              "texts": [_POLICY_RC_D, _DPKG_NODOC, _SSHD_CONFIG, _CONFIGURE_SCRIPT]}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def ensure_image(debian_packages: Iterable[str], pip_requirements: Iterable[str], admin_user: str,
                 cache_root: Path = DEFAULT_CACHE_ROOT, progress: Callable[[str], None] = print) -> Path:
    """Return ``<cache_root>/<key>/rootfs``, a ready image for these inputs, baking it if needed.

    A cache hit (``READY`` exists) returns at once, without root and without touching anything.
    Otherwise the host is checked first (root, ``debootstrap``, a Python 3.11 with pip, a Debian
    bookworm entry in its apt sources, :data:`MIN_FREE_BYTES` free) and MissingPrerequisite or
    ImageError says what is missing before anything is created. Then the image is baked (75-130 s
    on a 2-core machine, mostly debootstrap and apt) while holding ``.<key>.lock``; a second
    process asking for the same key waits and then gets the first one's image. Each step is
    announced through ``progress`` as one sentence.

    A failed step raises ImageError with the command, the last lines of its output and the path of
    the kept log (``<key>.failed.log``); the work directory is gone and there is no READY. The
    returned tree is shared by every VM: never write into it.
    """
    key = image_key(debian_packages, pip_requirements, admin_user)
    final = cache_root / key
    if (final / "READY").is_file():
        progress(f"Image {key} is cached at {final / 'rootfs'}.")
        return final / "rootfs"
    sources = _preflight(cache_root)
    cache_root.mkdir(parents=True, exist_ok=True)
    with open(cache_root / f".{key}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"Image {key} is being baked by another process; waiting for it.")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "READY").is_file():
            progress(f"Image {key} was baked by another process; it is at {final / 'rootfs'}.")
            return final / "rootfs"
        for stale in [*cache_root.glob(f".{key}.bake-*"), *([final] if final.exists() else [])]:
            progress(f"Removing {stale}, left by an unfinished bake.")
            _remove_tree(stale)
        work = Path(tempfile.mkdtemp(prefix=f".{key}.bake-", dir=cache_root))
        failed_log = cache_root / f"{key}.failed.log"
        try:
            with _Bake(work / "bake.log", progress, key) as bake:
                bake.say(f"Baking image {key} under {cache_root} (1-2 minutes; log: {final / 'bake.log'}).")
                debian, pip = _normalised(debian_packages, pip_requirements)
                ready = _bake(bake, work / "rootfs", debian, pip, admin_user, sources, cache_root.parent / "wheels")
                (work / "READY").write_text(json.dumps(ready, indent=2, sort_keys=True) + "\n")
            work.chmod(0o755)
            work.rename(final)
        except BaseException:
            if (work / "bake.log").exists():
                shutil.copyfile(work / "bake.log", failed_log)
            try:
                _remove_tree(work)
            except Exception as exc:  # the bake's own failure matters more; the next bake retries
                progress(f"Could not remove {work} after the failed bake ({exc}); the next bake will.")
            raise
        failed_log.unlink(missing_ok=True)
    progress(f"Image {key} is ready at {final / 'rootfs'}: {ready['size_bytes'] / 1e6:.0f} MB, "
             f"baked in {ready['bake_seconds']:.0f} s.")
    return final / "rootfs"


def _preflight(cache_root: Path) -> DebianSources:
    if os.geteuid() != 0:
        raise MissingPrerequisite("baking the local image needs root (debootstrap, chroot, mount)")
    for tool in ("debootstrap", "chroot", "mount", "umount"):
        if not shutil.which(tool):
            raise MissingPrerequisite(f"`{tool}` is not installed: `apt-get install debootstrap` "
                                      f"(the Makefile does) before baking the local image")
    image_python()  # the wheels are built with it
    sources = debian_sources(s for f in host_apt_source_files() for s in parse_apt_sources(f))
    existing = next(p for p in (cache_root, *cache_root.parents) if p.exists())
    if shutil.disk_usage(existing).free < MIN_FREE_BYTES:
        raise MissingPrerequisite(f"less than {MIN_FREE_BYTES >> 30} GiB free under {existing} for the image")
    return sources


# --------------------------------------------------------------------------------------------
# The bake


class _Bake:
    """One bake's log, progress and step timings; ``run`` logs a command and its output."""

    def __init__(self, log_path: Path, progress: Callable[[str], None], key: str):
        self.log_path, self.progress, self.key, self.steps = log_path, progress, key, {}
        self.started = time.monotonic()

    def __enter__(self) -> _Bake:
        self.log = open(self.log_path, "a", buffering=1)
        return self

    def __exit__(self, *exc) -> None:
        self.log.close()

    def say(self, sentence: str) -> None:
        self.progress(sentence)
        self.log.write(f"\n### {time.strftime('%H:%M:%S')} {sentence}\n")

    @contextlib.contextmanager
    def step(self, name: str, sentence: str) -> Iterator[None]:
        self.say(f"Image {self.key}: {sentence}")
        start = time.monotonic()
        yield
        self.steps[name] = round(time.monotonic() - start, 1)

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 900,
            capture: bool = False) -> str:
        """Run ``argv`` in its own process group; whatever interrupts it (timeout, Ctrl-C) kills the
        whole group first, so no process is left using the mounts or the tree about to be deleted."""
        self.log.write(f"$ {' '.join(argv)}\n")
        proc = subprocess.Popen(argv, env=env, text=True, start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if capture else self.log, stderr=self.log)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise ImageError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s; {self._tail()}") from exc
            raise
        if proc.returncode != 0:
            raise ImageError(f"`{' '.join(argv)}` failed with exit code {proc.returncode}; {self._tail()}")
        return out if capture else ""

    def chroot(self, rootfs: Path, *argv: str, **kwargs) -> str:
        env = {"PATH": _CHROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
               "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
               **{k: v for k, v in os.environ.items() if k.lower() in ("http_proxy", "https_proxy", "no_proxy")}}
        return self.run(["chroot", str(rootfs), *argv], env=env, **kwargs)

    def _tail(self, lines: int = 25) -> str:
        self.log.flush()
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        kept = self.log_path.parent.parent / f"{self.key}.failed.log"
        return "its last output:\n" + "\n".join(tail) + f"\n(full log: {kept})"


def _bake(bake: _Bake, rootfs: Path, debian: list[str], pip: list[str], admin_user: str,
          sources: DebianSources, wheels_root: Path) -> dict:
    main = sources.main
    with bake.step("debootstrap", f"debootstrap {SUITE} (minbase) from {main.uri} (about 75 s)."):
        keyring = main.option("Signed-By") or ""
        bake.run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                  f"--components={','.join(main.components)}",
                  *([f"--keyring={keyring}"] if keyring.startswith("/") and Path(keyring).is_file() else []),
                  SUITE, str(rootfs), main.uri], env={**os.environ, "LC_ALL": "C"}, timeout=1800)
    _write(rootfs / "usr/sbin/policy-rc.d", _POLICY_RC_D, 0o755)
    try:
        _configure_apt(bake, rootfs, sources)
        with _chroot_mounts(bake, rootfs):
            with bake.step("packages", f"apt-get install {' '.join(debian)} with the host's mirrors (about 60 s)."):
                bake.chroot(rootfs, "apt-get", "update")
                bake.chroot(rootfs, "apt-get", "-y", *_KEEP_CONFFILES, "upgrade")
                bake.chroot(rootfs, "apt-get", "-y", *_KEEP_CONFFILES, "install", "--no-install-recommends", *debian,
                            timeout=1800)
            if pip:
                with bake.step("pip", f"pip install {' '.join(pip)} into {VENV} from a wheelhouse built on the host."):
                    wheels = rootfs / "tmp/pgha-wheelhouse"
                    shutil.copytree(wheelhouse(pip, wheels_root), wheels)
                    bake.chroot(rootfs, "python3", "-m", "venv", VENV)
                    bake.chroot(rootfs, f"{VENV}/bin/pip", "install", "--no-index", "--no-cache-dir",
                                "--find-links", "/tmp/pgha-wheelhouse", *pip)
                    bake.chroot(rootfs, f"{VENV}/bin/pip", "check")
                    shutil.rmtree(wheels)
            with bake.step("configure", f"removing Debian's defaults, adding admin user {admin_user}, trimming."):
                _write(rootfs / "etc/ssh/sshd_config.d/pgha.conf", _SSHD_CONFIG, 0o644)
                bake.chroot(rootfs, "/bin/sh", "-c", _CONFIGURE_SCRIPT, "configure", admin_user)
            freeze = bake.chroot(rootfs, f"{VENV}/bin/pip", "freeze", capture=True).split() if pip else []
            patroni = (bake.chroot(rootfs, f"{VENV}/bin/patroni", "--version", capture=True).strip()
                       if (rootfs / VENV.lstrip("/") / "bin/patroni").exists() else None)
            names = [re.split(r"[=:]", p)[0] for p in debian]
            versions = bake.chroot(rootfs, "dpkg-query", "-W", "-f", "${Package}=${Version}\\n", *names,
                                   capture=True).split() if names else []
    finally:
        (rootfs / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
    size = int(bake.run(["du", "--summarize", "--one-file-system", "--block-size=1", str(rootfs)],
                        capture=True).split()[0])
    return {"key": bake.key, "recipe": RECIPE_VERSION, "suite": SUITE, "mirror": main.uri,
            "security_mirror": sources.security.uri if sources.security else None,
            "base_packages": list(BASE_PACKAGES), "debian_packages": debian, "pip_requirements": pip,
            "admin_user": admin_user, "installed": versions, "pip_freeze": freeze, "patroni": patroni,
            "baked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "steps": bake.steps,
            "bake_seconds": round(time.monotonic() - bake.started, 1), "size_bytes": size}


def _configure_apt(bake: _Bake, rootfs: Path, sources: DebianSources) -> None:
    """The host's bookworm sources and apt Acquire settings (proxies, validity, CAs) in the image."""
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    _write(rootfs / "etc/apt/sources.list.d/debian.sources", render_deb822(sources.entries), 0o644)
    for entry in sources.entries:
        keyring = entry.option("Signed-By") or ""
        if keyring.startswith("/") and Path(keyring).is_file() and not (rootfs / keyring.lstrip("/")).exists():
            (rootfs / keyring.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(keyring, rootfs / keyring.lstrip("/"))
    for conf in _host_acquire_conf():
        shutil.copy2(conf, rootfs / "etc/apt" / conf.relative_to("/etc/apt"))
    _write(rootfs / "etc/dpkg/dpkg.cfg.d/pgha-nodoc", _DPKG_NODOC, 0o644)
    local_cas = Path("/usr/local/share/ca-certificates")
    if any(e.uri.startswith("https:") for e in sources.entries) and local_cas.is_dir():
        shutil.copytree(local_cas, rootfs / "usr/local/share/ca-certificates", dirs_exist_ok=True)
        bake.chroot(rootfs, "update-ca-certificates")


def _host_acquire_conf(etc_apt: Path = Path("/etc/apt")) -> list[Path]:
    """The host's own apt configuration files that set ``Acquire`` options (proxies, CAs, validity
    checks); files that belong to a Debian package are left out, their package brings them."""
    confs = [c for c in (etc_apt / "apt.conf", *sorted((etc_apt / "apt.conf.d").glob("*")))
             if c.is_file() and "acquire" in c.read_text(errors="replace").lower()]
    owned = subprocess.run(["dpkg-query", "--search", *map(str, confs)], capture_output=True, text=True).stdout
    owned_paths = {line.rpartition(": ")[2] for line in owned.splitlines()}
    return [c for c in confs if str(c) not in owned_paths]


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


# --------------------------------------------------------------------------------------------
# Mounts


@contextlib.contextmanager
def _chroot_mounts(bake: _Bake, rootfs: Path) -> Iterator[None]:
    """/proc, /sys (read-only), /dev and /dev/pts in ``rootfs``; on the way out, whatever still runs
    in the chroot is killed (apt runs dpkg in a session of its own) and each mount is unmounted."""
    with contextlib.ExitStack() as mounted:
        for args, target in ((["-t", "proc", "proc"], "proc"), (["-t", "sysfs", "-o", "ro", "sysfs"], "sys"),
                             (["--bind", "/dev"], "dev"), (["--bind", "/dev/pts"], "dev/pts")):
            bake.run(["mount", *args, str(rootfs / target)])
            mounted.callback(_unmount, rootfs / target)
        mounted.callback(kill_processes_in, rootfs)
        yield


def _unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True)


def mounts_below(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Path]:
    """Mount points at or under ``path``, deepest first (octal escapes such as ``\\040`` decoded)."""
    root = os.path.realpath(path)
    points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4])
              for line in mountinfo.read_text().splitlines() if len(line.split()) > 4]
    below = {p for p in points if _is_below(p, root)}
    return [Path(p) for p in sorted(below, key=lambda p: (-p.count("/"), p))]


def kill_processes_in(path: Path, proc: Path = Path("/proc")) -> list[int]:
    """SIGKILL every process whose root directory is ``path`` or below it (chrooted into it) and wait
    until each has ended (through a pidfd, at most 10 s each). Returns the pids it killed."""
    root, killed = os.path.realpath(path), []
    for _ in range(10):  # what forks while we scan is caught by the next round
        inside = []
        for entry in proc.iterdir():
            with contextlib.suppress(OSError):  # gone, or a kernel thread
                if entry.name.isdigit() and _is_below(os.readlink(entry / "root"), root):
                    inside.append(int(entry.name))
        if not inside:
            break
        for pid in inside:
            with contextlib.suppress(ProcessLookupError):
                fd = os.pidfd_open(pid)
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                    select.select([fd], [], [], 10)
                finally:
                    os.close(fd)
        killed += [pid for pid in inside if pid not in killed]
    return killed


def _is_below(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _remove_tree(path: Path) -> None:
    """Delete a work or stale image directory, first killing what runs in it and unmounting what
    is mounted in it.

    Refuses (ImageError) to delete while a mount remains: deleting through a bind mount of /dev
    would delete the host's device nodes.
    """
    kill_processes_in(path)
    for point in mounts_below(path):
        _unmount(point)
    if remaining := mounts_below(path):
        raise ImageError(f"not deleting {path}: still mounted there: {', '.join(map(str, remaining))}")
    if path.exists():
        shutil.rmtree(path)


def prune_images(keep: Path, cache_root: Path = DEFAULT_CACHE_ROOT,
                 mounts: Path = Path("/proc/self/mounts")) -> list[Path]:
    """Delete every cached image but ``keep`` (a ``<key>/rootfs`` path) that no overlay uses as its
    lower layer; returns what was deleted. Images are 0.5 GB each: a changed role package list
    would otherwise leave one behind per change."""
    in_use = {keep.parent.resolve()}
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] == "overlay":
            in_use |= {Path(opt.removeprefix("lowerdir=")).resolve().parent
                       for opt in fields[3].split(",") if opt.startswith("lowerdir=")}
    removed = []
    for image in sorted(p for p in cache_root.iterdir() if p.is_dir() and (p / "READY").exists()):
        if image.resolve() not in in_use:
            _remove_tree(image)
            removed.append(image)
    return removed
