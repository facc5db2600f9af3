"""The local image's cache key, the host apt sources it copies, its cache and its clean-up on failure.

Nothing here bakes an image or needs root: the bake itself is exercised by a real run
(``ensure_image`` with the stack's packages), not mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.targets.local import image

DEB = ["etcd-server", "postgresql-15", "haproxy"]
PIP = ["patroni[etcd3]==4.1.0", "psycopg[binary]>=3.1"]

DEB822 = """\
# the main archive, twice: one entry per URI
Types: deb deb-src
URIs: http://mirror.example/debian http://mirror2.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEADmW5NlOwFkgfnhZnjf
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src
URIs: http://src-only.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://other.example/apt
Suites: nodistro
Components: main
"""

ONE_LINE = """\
# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64,i386 signed-by=/etc/apt/keyrings/mirror.gpg] http://mirror.example/debian bookworm main non-free-firmware # trailing
deb http://security.example/debian-security bookworm-security main
deb http://mirror.example/debian trixie main
"""


@pytest.fixture
def no_host(monkeypatch):
    """Any attempt to check the host or run a command fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected host access: {args}")
    monkeypatch.setattr(image, "_preflight", refuse)
    monkeypatch.setattr(image.subprocess, "run", refuse)


# -------------------------------------------------------------------------- key

def test_key_is_16_hex_digits_and_ignores_order_duplicates_and_blanks():
    key = image.image_key(DEB, PIP, "pgadmin")
    assert len(key) == 16 and int(key, 16) >= 0
    assert image.image_key(list(reversed(DEB)) + [DEB[0], " "], list(reversed(PIP)), "pgadmin") == key


@pytest.mark.parametrize("seed", ["1", "2"])
def test_key_is_the_same_in_another_process(seed):
    """The cache outlives the process: string hashing (PYTHONHASHSEED) must not leak into the key."""
    code = f"from deployer.targets.local import image; print(image.image_key({DEB[::-1]!r}, {PIP!r}, 'pgadmin'))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                         capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent).stdout
    assert out.strip() == image.image_key(DEB, PIP, "pgadmin")


@pytest.mark.parametrize("change", [
    lambda d, p, u: (d + ["curl"], p, u),
    lambda d, p, u: (d[:-1], p, u),
    lambda d, p, u: (d, ["patroni[etcd3]==4.0.0", *p[1:]], u),
    lambda d, p, u: (d, p, "someoneelse"),
])
def test_key_changes_with_any_input(change):
    assert image.image_key(*change(DEB, PIP, "pgadmin")) != image.image_key(DEB, PIP, "pgadmin")


def test_key_changes_with_the_recipe(monkeypatch):
    key = image.image_key(DEB, PIP, "pgadmin")
    monkeypatch.setattr(image, "RECIPE_VERSION", image.RECIPE_VERSION + 1)
    assert image.image_key(DEB, PIP, "pgadmin") != key
    monkeypatch.undo()
    monkeypatch.setattr(image, "_CONFIGURE_SCRIPT", image._CONFIGURE_SCRIPT + "\ntrue\n")
    assert image.image_key(DEB, PIP, "pgadmin") != key


@pytest.mark.parametrize("deb, pip, user", [
    (["--allow-unauthenticated"], PIP, "pgadmin"),
    (DEB, ["--index-url=http://evil.example/"], "pgadmin"),
    (DEB, PIP, "root; rm -rf /"),
    (DEB, PIP, "pg.admin"),
    (DEB, PIP, ""),
])
def test_key_refuses_inputs_that_are_not_plain_names(deb, pip, user):
    with pytest.raises(ValueError):
        image.image_key(deb, pip, user)


# -------------------------------------------------------------------------- apt sources

def test_deb822_sources(tmp_path):
    path = tmp_path / "debian.sources"
    path.write_text(DEB822)
    entries = image.parse_apt_sources(path)
    assert [e.uri for e in entries] == ["http://mirror.example/debian", "http://mirror2.example/debian",
                                        "http://security.example/debian-security", "http://other.example/apt"]
    main = entries[0]
    assert main.suites == ("bookworm", "bookworm-updates") and main.components == ("main", "contrib")
    assert main.option("signed-by") == "/usr/share/keyrings/debian-archive-keyring.gpg"
    assert main.origin == str(path)
    assert entries[2].option("Signed-By").splitlines() == [
        "", "-----BEGIN PGP PUBLIC KEY BLOCK-----", ".", "mQINBGPL0BUBEADmW5NlOwFkgfnhZnjf",
        "-----END PGP PUBLIC KEY BLOCK-----"]

    sources = image.debian_sources(entries)
    assert sources.main.uri == "http://mirror.example/debian"
    assert sources.security.uri == "http://security.example/debian-security"
    assert [e.uri for e in sources.entries] == [e.uri for e in entries[:3]]


def test_one_line_sources(tmp_path):
    path = tmp_path / "sources.list"
    path.write_text(ONE_LINE)
    entries = image.parse_apt_sources(path)
    assert [(e.uri, e.suites) for e in entries] == [
        ("http://mirror.example/debian", ("bookworm",)),
        ("http://security.example/debian-security", ("bookworm-security",)),
        ("http://mirror.example/debian", ("trixie",))]
    assert entries[0].components == ("main", "non-free-firmware")
    assert entries[0].option("Architectures") == "amd64 i386"
    assert entries[0].option("Signed-By") == "/etc/apt/keyrings/mirror.gpg"

    sources = image.debian_sources(entries)
    assert sources.main.uri == "http://mirror.example/debian"
    assert sources.security.uri == "http://security.example/debian-security"
    assert all("trixie" not in e.suites for e in sources.entries)


def test_host_files_are_the_ones_apt_reads_in_apt_order(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(ONE_LINE)
    for name in ("zz.list", "debian.sources", "old.list.disabled", "notes.txt"):
        (tmp_path / "sources.list.d" / name).write_text(DEB822 if name.endswith("sources") else "")
    assert [p.relative_to(tmp_path).as_posix() for p in image.host_apt_source_files(tmp_path)] == [
        "sources.list", "sources.list.d/debian.sources", "sources.list.d/zz.list"]
    assert image.host_apt_source_files(tmp_path / "absent") == []


def test_the_main_entry_comes_first_even_when_security_is_listed_first(tmp_path):
    path = tmp_path / "sources.list"
    path.write_text("deb http://security.example/debian-security bookworm-security main\n"
                    "deb http://mirror.example/debian bookworm main\n")
    sources = image.debian_sources(image.parse_apt_sources(path))
    assert (sources.main.uri, sources.security.uri) == ("http://mirror.example/debian",
                                                        "http://security.example/debian-security")


@pytest.mark.parametrize("text", [
    "deb http://mirror.example/debian trixie main\n",
    "deb http://mirror.example/debian bookworm contrib\n",
    "deb cdrom:[Debian GNU/Linux 12]/ bookworm main\n",
    "deb-src http://mirror.example/debian bookworm main\n",
    "",
])
def test_no_bookworm_mirror_is_a_clear_error(tmp_path, text):
    path = tmp_path / "sources.list"
    path.write_text(text)
    with pytest.raises(image.ImageError, match="bookworm"):
        image.debian_sources(image.parse_apt_sources(path))


def test_rendered_sources_read_back_the_same(tmp_path):
    src = tmp_path / "in.sources"
    src.write_text(DEB822)
    entries = image.debian_sources(image.parse_apt_sources(src)).entries
    out = tmp_path / "out.sources"
    out.write_text(image.render_deb822(entries))
    again = image.parse_apt_sources(out)
    assert [(e.uri, e.suites, e.components, e.options) for e in again] == \
           [(e.uri, e.suites, e.components, e.options) for e in entries]


# -------------------------------------------------------------------------- cache and failure

def test_cache_hit_returns_at_once_without_touching_the_host(tmp_path, no_host):
    key = image.image_key(DEB, PIP, "pgadmin")
    (tmp_path / key / "rootfs").mkdir(parents=True)
    (tmp_path / key / "READY").write_text("{}")
    said = []
    assert image.ensure_image(list(reversed(DEB)), PIP, "pgadmin", cache_root=tmp_path,
                              progress=said.append) == tmp_path / key / "rootfs"
    assert len(said) == 1 and "cached" in said[0]


def test_a_directory_without_ready_is_not_a_cache_hit(tmp_path, no_host):
    key = image.image_key(DEB, PIP, "pgadmin")
    (tmp_path / key / "rootfs").mkdir(parents=True)
    with pytest.raises(AssertionError, match="unexpected host access"):
        image.ensure_image(DEB, PIP, "pgadmin", cache_root=tmp_path, progress=lambda s: None)


@pytest.mark.parametrize("failure", [image.ImageError("debootstrap failed"), KeyboardInterrupt()])
def test_a_failed_bake_leaves_no_ready_no_work_directory_and_keeps_its_log(tmp_path, monkeypatch, failure):
    key = image.image_key(DEB, PIP, "pgadmin")
    stale = tmp_path / f".{key}.bake-old"
    (stale / "rootfs").mkdir(parents=True)
    half = tmp_path / key / "rootfs"
    half.mkdir(parents=True)
    monkeypatch.setattr(image, "_preflight", lambda root: (None, "python3"))

    def bake(b, rootfs, *args):
        rootfs.mkdir()
        (rootfs / "etc").mkdir()
        b.say("debootstrap would run now")
        raise failure
    monkeypatch.setattr(image, "_bake", bake)

    with pytest.raises(type(failure)):
        image.ensure_image(DEB, PIP, "pgadmin", cache_root=tmp_path, progress=lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{key}.lock", f"{key}.failed.log"]
    assert "debootstrap would run now" in (tmp_path / f"{key}.failed.log").read_text()


def test_a_successful_bake_is_renamed_into_place_with_ready(tmp_path, monkeypatch):
    monkeypatch.setattr(image, "_preflight", lambda root: (None, "python3"))
    key = image.image_key(DEB, PIP, "pgadmin")
    (tmp_path / f"{key}.failed.log").write_text("an earlier failure")

    def bake(b, rootfs, debian, pip, admin_user, sources, python):
        rootfs.mkdir()
        assert (debian, pip, admin_user) == (sorted(DEB), sorted(PIP), "pgadmin")
        return {"key": b.key, "size_bytes": 1, "bake_seconds": 0.1}
    monkeypatch.setattr(image, "_bake", bake)

    said = []
    root = image.ensure_image(DEB, PIP, "pgadmin", cache_root=tmp_path, progress=said.append)
    assert root == tmp_path / key / "rootfs" and root.is_dir()
    assert json.loads((tmp_path / key / "READY").read_text())["key"] == key
    assert (tmp_path / key / "bake.log").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{key}.lock", key]
    assert "ready" in said[-1]


def test_mounts_below_decodes_escapes_and_lists_deepest_first(tmp_path):
    base = tmp_path / "my images"
    info = tmp_path / "mountinfo"
    esc = str(base).replace(" ", "\\040")
    info.write_text(
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        f"90 27 0:21 / {esc}/rootfs/proc rw - proc proc rw\n"
        f"91 27 0:6 / {esc}/rootfs/dev rw - devtmpfs devtmpfs rw\n"
        f"92 91 0:7 / {esc}/rootfs/dev/pts rw - devpts devpts rw\n"
        f"93 27 0:8 / {esc}-other/rootfs rw - tmpfs tmpfs rw\n")
    assert image.mounts_below(base, info) == [base / "rootfs/dev/pts", base / "rootfs/dev", base / "rootfs/proc"]


def test_a_tree_with_a_mount_left_is_never_deleted(tmp_path, monkeypatch):
    (tmp_path / "work/rootfs/dev").mkdir(parents=True)
    monkeypatch.setattr(image, "mounts_below", lambda path: [path / "rootfs/dev"])
    monkeypatch.setattr(image, "_unmount", lambda path: None)
    with pytest.raises(image.ImageError, match="still mounted"):
        image._remove_tree(tmp_path / "work")
    assert (tmp_path / "work/rootfs/dev").is_dir()


def test_processes_chrooted_into_the_tree_are_killed_and_others_are_not(tmp_path):
    """A fake /proc: one real child of ours appears chrooted into the tree, another elsewhere."""
    inside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    outside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc = tmp_path / "proc"
        for pid, root in ((inside.pid, tmp_path / "work/rootfs"), (outside.pid, tmp_path / "work-other")):
            (proc / str(pid)).mkdir(parents=True)
            os.symlink(root, proc / str(pid) / "root")
        (proc / "self").mkdir()
        assert image.kill_processes_in(tmp_path / "work", proc) == [inside.pid]
        assert inside.wait(timeout=5) == -9
        assert outside.poll() is None
    finally:
        inside.kill(), outside.kill(), inside.wait(), outside.wait()


def test_prune_keeps_the_current_image_and_any_image_an_overlay_uses(tmp_path):
    from deployer.targets.local.image import prune_images

    for key in ("current", "in-use", "stale"):
        (tmp_path / key / "rootfs").mkdir(parents=True)
        (tmp_path / key / "READY").write_text("{}")
    (tmp_path / "half-baked").mkdir()
    mounts = tmp_path / "mounts"
    mounts.write_text(f"overlay /var/lib/pgha/x/vms/pg1/root overlay rw,lowerdir={tmp_path}/in-use/rootfs,"
                      f"upperdir=/u,workdir=/w 0 0\nproc /proc proc rw 0 0\n")
    removed = prune_images(tmp_path / "current" / "rootfs", tmp_path, mounts)
    assert removed == [tmp_path / "stale"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "half-baked", "in-use", "mounts"]
