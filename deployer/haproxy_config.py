"""Each node's HAProxy as it runs, against what the haproxy role renders from the spec.

HAProxy 2.6 reports part of its running configuration through its runtime API: per server the
address, ``rise``, ``fall`` and ``maxconn`` (``show stat``), the check port (``show servers state``),
the global ``maxconn`` (``show info``). The rest (timeouts, ``inter``/``fastinter``/``downinter``,
``on-marked-down``, ``retries``, the checks' request) it reports nowhere: for those the effective
configuration is the file the running process was started with (``-f`` in its command line), taken
as loaded only when it has not changed since (its mtime before the start of the worker process that
``show info`` names, within the 1.5 s the clocks allow); a file edited after the load fails, since
what runs is then unknown.

Both sides are reduced to the same flat form, ``{(section, setting): value}`` (``effective``), with
``defaults`` and ``default-server`` applied as HAProxy applies them and times in milliseconds, so a
server's ``fall`` or a proxy's ``timeout check`` is one entry, named in any difference.
"""

from __future__ import annotations

import dataclasses
import json
import re

import jinja2

from deployer import haproxy_stat
from deployer.inventory import role_variables
from deployer.paths import ANSIBLE_DIR
from deployer.spec import StackSpec

#: Keywords whose second word belongs to the setting's name (``timeout check``, ``option httpchk``).
TWO_WORD = ("timeout", "option", "http-check", "monitor", "stats", "tcp-check", "http-request", "tcp-request")
#: Server options that take one argument; every other option is a flag (``check``, ``backup``).
SERVER_ARGS = ("inter", "fastinter", "downinter", "fall", "rise", "port", "addr", "maxconn", "minconn",
               "maxqueue", "weight", "on-marked-down", "on-marked-up", "on-error", "slowstart", "error-limit",
               "observe", "agent-port", "agent-inter", "cookie", "id", "init-addr", "resolvers", "pool-max-conn",
               "verify", "ca-file", "crl-file", "verifyhost", "crt", "sni", "check-sni", "ssl-min-ver", "ssl-max-ver",
               "ciphers", "ciphersuites", "alpn", "check-alpn")
#: Settings holding a time (HAProxy's unit: milliseconds unless suffixed).
_TIMES = re.compile(r"^(timeout .*|stats timeout|server \S+ (inter|fastinter|downinter|slowstart|agent-inter))$")
_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}

Settings = dict[tuple[str, str], str]


def expected_config(spec: StackSpec, target_vars: dict) -> str:
    """``haproxy.cfg`` as the haproxy role renders it for ``spec`` on a target whose
    ``Target.ansible_vars()`` are ``target_vars`` (the role's own template and variables)."""
    template = (ANSIBLE_DIR / "roles" / "haproxy" / "templates" / "haproxy.cfg.j2").read_text()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
                             trim_blocks=True)  # as Ansible's template module renders
    return env.from_string(template).render(role_variables("haproxy", spec, target_vars), ansible_managed="")


def _ms(value: str) -> str:
    match = re.fullmatch(r"(\d+)(us|ms|s|m|h|d)?", value)
    if not match:
        return value
    ms = int(match[1]) * _UNITS_MS[match[2] or "ms"]
    return f"{ms:.0f}ms" if ms == int(ms) else f"{ms}ms"


def _server_options(tokens: list[str]) -> dict[str, str]:
    options, i = {}, 0
    while i < len(tokens):
        if tokens[i] in SERVER_ARGS and i + 1 < len(tokens):
            options[tokens[i]], i = tokens[i + 1], i + 2
        else:
            options[tokens[i]], i = "on", i + 1
    return options


def effective(config: str) -> Settings:
    """Every setting of every section of ``config`` but ``defaults`` as HAProxy applies it: proxies
    inherit the ``defaults`` section's settings they do not set, servers the ``default-server`` options they do
    not set; ``no option X`` is ``option X`` = ``off``; times in ms. Keys: ``("global", "maxconn")``,
    ``("listen primary", "timeout check")``, ``("listen primary", "server pg1 fall")``..."""
    sections: dict[str, dict[str, str]] = {}
    servers: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in config.splitlines():
        tokens = raw.split("#", 1)[0].split()
        if not tokens:
            continue
        if not raw[0].isspace():
            current = " ".join(tokens[:2])
            sections[current], servers[current] = {}, {}
            continue
        if tokens[0] == "server" and len(tokens) > 2:
            servers[current][tokens[1]] = tokens[2:]
            continue
        off = tokens[0] == "no"
        tokens = tokens[1:] if off else tokens
        width = 2 if tokens[0] in TWO_WORD and len(tokens) > 1 else 1
        key, value = " ".join(tokens[:width]), "off" if off else (" ".join(tokens[width:]) or "on")
        sections[current][key] = f"{sections[current][key]} | {value}" if key in sections[current] else value
    defaults = sections.get("defaults", {})
    found: Settings = {}
    for name, settings in sections.items():
        if name == "defaults":
            continue  # not a proxy: what it sets counts where it is inherited
        own = {**({} if name == "global" else defaults), **settings}
        shared = _server_options(own.pop("default-server", "").split())
        found.update({(name, key): value for key, value in own.items()})
        for server, (address, *options) in servers[name].items():
            found[(name, f"server {server} address")] = address
            found.update({(name, f"server {server} {k}"): v for k, v in {**shared, **_server_options(options)}.items()})
    return {key: _ms(value) if _TIMES.match(key[1]) else value for key, value in found.items()}


@dataclasses.dataclass(frozen=True)
class Running:
    """What one node's HAProxy reports of itself: its command line, the files it was started with
    (``{path: (text, mtime)}``), when its worker process started and the node's clock (epoch
    seconds), and the runtime API's answers."""

    argv: list[str]
    files: dict[str, tuple[str, float]]
    started: float
    now: float
    show_info: str
    show_stat: str
    servers_state: str


def _info(show_info: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in show_info.splitlines() if ": " in line)


def _servers_state(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """``show servers state`` (a format version line, a ``# column ...`` header, one row per server)
    by (proxy, server)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line[2:].split() for line in lines if line.startswith("# ")), [])
    rows = [dict(zip(header, line.split())) for line in lines[1:] if not line.startswith("#")]
    return {(r["be_name"], r["srv_name"]): r for r in rows if "srv_name" in r}


def reported(running: Running, sections: dict[str, str]) -> Settings:
    """The settings HAProxy's runtime API reports, in ``effective``'s form; ``sections`` maps a
    proxy's name to its section (``primary`` -> ``listen primary``)."""
    found: Settings = {}
    if "Maxconn" in (info := _info(running.show_info)):
        found[("global", "maxconn")] = info["Maxconn"]
    state = _servers_state(running.servers_state)
    for proxy, rows in haproxy_stat.servers(running.show_stat).items():
        section = sections.get(proxy, f"? {proxy}")
        for server, row in rows.items():
            values = {"address": row.get("addr", ""), "rise": row.get("check_rise", ""), "fall": row.get("check_fall", ""),
                      "maxconn": row.get("slim", "")}
            check_port = state.get((proxy, server), {}).get("srv_check_port", "0")
            if check_port != "0":
                values["port"] = check_port
            found.update({(section, f"server {server} {k}"): v for k, v in values.items() if v})
    return found


def differences(node: str, expected: str, running: Running) -> list[str]:
    """One sentence per setting where ``running`` differs from the ``expected`` configuration: first
    what the runtime API reports, then the file the process loaded (or why it cannot count as
    loaded). Empty when every setting matches."""
    want = effective(expected)
    sections = {name.split(" ", 1)[1]: name for name, _ in want if " " in name}
    seen = reported(running, sections)
    wrong = [f"{node}: {section}: {key}: the role renders {want.get((section, key), 'nothing')!r}, "
             f"HAProxy reports {value!r} (runtime API)"
             for (section, key), value in sorted(seen.items()) if want.get((section, key)) != value]
    paths = [running.argv[i + 1] for i, arg in enumerate(running.argv[:-1]) if arg == "-f"]
    missing = [p for p in paths if p not in running.files]
    if not paths or missing:
        return [*wrong, f"{node}: HAProxy runs from {paths or 'no -f file'} ({' '.join(running.argv)}); "
                        f"not a file that could be read: {missing}"]
    edited = [p for p in paths if running.files[p][1] > running.started + 1.5]
    if edited:
        return [*wrong, f"{node}: {', '.join(edited)} changed after HAProxy loaded it "
                        f"({running.now - running.started:.0f} s ago): what it runs is not that file"]
    loaded = effective("\n".join(running.files[p][0] for p in paths))
    for (section, key) in sorted(set(want) | set(loaded)):
        if want.get((section, key)) != loaded.get((section, key)):
            wrong.append(f"{node}: {section}: {key}: the role renders {want.get((section, key), 'nothing')!r}, "
                         f"HAProxy loaded {loaded.get((section, key), 'nothing')!r} ({', '.join(paths)})")
    return wrong


#: Run on a node (``python3 -c``, argument: the stats socket): prints ``Running``'s fields as JSON.
COLLECT = """
import json, os, socket, subprocess, sys, time
def ask(command):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(command.encode() + b"\\n")
    return b"".join(iter(lambda: s.recv(65536), b"")).decode()
pid = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", "haproxy"], capture_output=True, text=True).stdout.strip()
argv = open(f"/proc/{pid}/cmdline", "rb").read().decode().rstrip("\\0").split("\\0")
paths = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-f"]
files = {p: [open(p).read(), os.stat(p).st_mtime] for p in paths if os.path.isfile(p)}
info = ask("show info")
worker = next(line.split(": ", 1)[1] for line in info.splitlines() if line.startswith("Pid: "))
ticks = int(open(f"/proc/{worker}/stat").read().rsplit(")", 1)[1].split()[19])
boot = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime "))
print(json.dumps({"argv": argv, "files": files, "started": boot + ticks / os.sysconf("SC_CLK_TCK"), "now": time.time(),
                  "show_info": info, "show_stat": ask("show stat"), "servers_state": ask("show servers state")}))
"""


def parse_collected(text: str) -> Running:
    """``COLLECT``'s output as ``Running``."""
    raw = json.loads(text)
    return Running(raw["argv"], {p: (t, m) for p, (t, m) in raw["files"].items()}, raw["started"], raw["now"],
                   raw["show_info"], raw["show_stat"], raw["servers_state"])
