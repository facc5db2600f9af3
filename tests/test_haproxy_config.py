"""The HAProxy verdict (``deployer.haproxy_config.differences``) on what a node's HAProxy 2.6 reported
of itself on a live local stack (``tests/fixtures/haproxy_node/``: its runtime API's answers and the
file it loaded, captured from pg3): the faithful node passes; every hand edit of a server option, a
timeout or a check setting fails naming the node, the section and the setting."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from deployer import haproxy_config
from deployer.haproxy_config import Running, differences, effective, expected_config
from deployer.spec import load_spec

FIXTURES = Path(__file__).parent / "fixtures" / "haproxy_node"
SPEC = load_spec()
LOCAL_VARS = {"common_apt_update_cache": False, "patroni_watchdog_mode": "off"}
EXPECTED = expected_config(SPEC, LOCAL_VARS)
CONFIG = "/etc/haproxy/haproxy.cfg"
STARTED = 1_764_918_000.0


def running(config: str | None = None, mtime: float = STARTED - 60, **runtime: str) -> Running:
    """pg3's HAProxy as captured, with its file replaced by ``config`` and runtime answers by ``runtime``."""
    captured = Running(argv=["/usr/sbin/haproxy", "-Ws", "-f", CONFIG, "-p", "/run/haproxy.pid", "-S",
                             "/run/haproxy-master.sock"],
                       files={CONFIG: ((FIXTURES / "haproxy.cfg").read_text(), mtime)}, started=STARTED,
                       now=STARTED + 600, show_info=(FIXTURES / "show_info.txt").read_text(),
                       show_stat=(FIXTURES / "show_stat.csv").read_text(),
                       servers_state=(FIXTURES / "servers_state.txt").read_text())
    files = {CONFIG: (config, mtime)} if config is not None else captured.files
    return dataclasses.replace(captured, files=files, **runtime)


def edited(pattern: str, replacement: str, text: str | None = None, count: int = 1) -> str:
    text = (FIXTURES / "haproxy.cfg").read_text() if text is None else text
    out, n = re.subn(pattern, replacement, text, count=count, flags=re.M)
    assert n, f"{pattern!r} is not in the captured configuration"
    return out


def test_the_captured_node_runs_what_the_role_renders():
    assert differences("pg3", EXPECTED, running()) == []


def test_the_runtime_api_reports_servers_as_the_file_sets_them():
    seen = haproxy_config.reported(running(), {"primary": "listen primary", "replicas": "listen replicas"})
    want = effective(EXPECTED)
    assert seen and all(want[key] == value for key, value in seen.items())
    assert {key for key in seen if key[0] == "listen primary"} >= {
        ("listen primary", f"server pg1 {k}") for k in ("address", "rise", "fall", "maxconn", "port")}


@pytest.mark.parametrize("pattern, replacement, named", [
    (r"^(    default-server .*) fall 2 ", r"\1 fall 5 ", "listen primary: server pg1 fall"),
    (r"^(    default-server .*) rise 1 ", r"\1 rise 3 ", "listen primary: server pg3 rise"),
    (r"^(    default-server.*) inter 1000ms ", r"\1 inter 3000ms ", "listen primary: server pg2 inter"),
    (r"^(    default-server .*) fastinter 200ms ", r"\1 ", "listen primary: server pg1 fastinter"),
    (r"^(    default-server .*) downinter 200ms ", r"\1 downinter 2s ", "listen primary: server pg1 downinter"),
    (r" on-marked-down shutdown-sessions$", "", "listen primary: server pg2 on-marked-down"),
    (r"^(    server pg2 .* check port 8008) (.*)$", r"\1 inter 5s \2", "listen primary: server pg2 inter"),
    (r"^(    server pg1 .*) maxconn 90 ", r"\1 maxconn 500 ", "listen primary: server pg1 maxconn"),
    (r"^    timeout check 1000ms$", "    timeout check 5s", "listen replicas: timeout check"),
    (r"^    timeout connect 4000ms$", "    timeout connect 10s", "listen primary: timeout connect"),
    (r"^    timeout client 30m$", "    timeout client 1h", "listen primary: timeout client"),
    (r"^    retries 0$", "    retries 3", "listen primary: retries"),
    (r"^    option httpchk OPTIONS /primary$", "    option httpchk OPTIONS /health", "listen primary: option httpchk"),
    (r"^    http-check expect status 200$", "    http-check expect status 503", "http-check expect"),
    (r"^(    server pg3 .*)$", r"\1\n    server pg4 10.0.1.7:5432 check port 8008", "server pg4 address"),
    (r"^    option srvtcpka\n", "", "listen primary: option srvtcpka"),
    (r"^    maxconn 2000$", "    maxconn 20000", "global: maxconn"),
    (r"^(    server pg2 .*) verify required ", r"\1 verify none ", "listen primary: server pg2 verify"),
    (r"^(    server pg1 .*) check-ssl ", r"\1 ", "listen primary: server pg1 check-ssl"),
], ids=["fall", "rise", "inter", "fastinter-dropped", "downinter", "on-marked-down", "server-inter", "maxconn",
        "timeout-check", "timeout-connect", "timeout-client", "retries", "httpchk", "expect", "extra-server",
        "srvtcpka", "global-maxconn", "verify-none", "check-ssl-dropped"])
def test_a_hand_edit_of_the_loaded_file_fails_naming_node_section_and_setting(pattern, replacement, named):
    found = differences("pg3", EXPECTED, running(edited(pattern, replacement)))
    assert found and all(line.startswith("pg3: ") for line in found)
    assert any(named in line for line in found), found


def test_an_edit_and_reload_shows_in_the_runtime_api_too():
    """A ``fall`` edited and reloaded: the runtime API reports it, the loaded file says it."""
    stat = re.sub(r"^(primary,pg\d,.*)$", lambda m: _column(m[1], "check_fall", "5"),
                  (FIXTURES / "show_stat.csv").read_text(), flags=re.M)
    found = differences("pg3", EXPECTED, running(edited(r" fall 2 ", " fall 5 "), show_stat=stat))
    assert "pg3: listen primary: server pg1 fall: the role renders '2', HAProxy reports '5' (runtime API)" in found
    assert any("HAProxy loaded '5'" in line for line in found)


def test_the_same_setting_spelled_otherwise_passes():
    """``1s`` is ``1000ms``; a setting in ``defaults`` or on each proxy is the same effective setting."""
    config = edited(r"^(    default-server.*) inter 1000ms ", r"\1 inter 1s ", count=0)
    config = edited(r"^    timeout check 1000ms$", "", config)
    config = edited(r"^((listen|frontend) \S+)$", r"\1\n    timeout check 1s", config, count=0)
    assert differences("pg3", EXPECTED, running(config)) == []


def test_a_file_edited_after_the_load_fails_even_if_it_matches():
    """What runs is then unknown: HAProxy did not load that file (edited, not reloaded)."""
    found = differences("pg3", EXPECTED, running(mtime=STARTED + 30))
    assert found == [f"pg3: {CONFIG} changed after HAProxy loaded it (600 s ago): what it runs is not that file"]


def test_a_process_without_a_readable_config_file_fails():
    found = differences("pg3", EXPECTED, dataclasses.replace(running(), files={}))
    assert len(found) == 1 and "not a file that could be read" in found[0] and CONFIG in found[0]


def test_the_expected_configuration_follows_the_spec():
    spec = SPEC.model_copy(update={"haproxy": SPEC.haproxy.model_copy(update={"check_fall": 4})})
    want = effective(expected_config(spec, LOCAL_VARS))
    assert want[("listen replicas", "server pg2 fall")] == "4"
    assert differences("pg3", expected_config(spec, LOCAL_VARS), running())


def _column(row: str, name: str, value: str) -> str:
    header = (FIXTURES / "show_stat.csv").read_text().splitlines()[0].lstrip("# ").split(",")
    cells = row.split(",")
    cells[header.index(name)] = value
    return ",".join(cells)
