"""PostgreSQL 15's parameters, known offline: which exist, their context, type, unit and range, and
how PostgreSQL reads a value of each.

The catalogue is ``deployer/data/postgresql-15-parameters.tsv``, ``pg_settings`` of the image's own
binary (``generate``: a throwaway server in the VM image, see its header). ``tests/test_pg_parameters.py``
regenerates it where the image exists and fails on any difference. Names are case-insensitive, as in
PostgreSQL; each function raises ``KeyError`` naming an unknown parameter.

- ``context(name)``: ``internal`` (read-only), ``postmaster`` (read at server start), ``sighup``
  (on reload), ``superuser-backend``/``backend`` (at a new session), ``superuser``/``user`` (any time).
- ``needs_restart(name)``: a changed value takes effect only after a restart (context ``postmaster``).
- ``normalise(name, value)``: the value as ``pg_settings.setting`` would report it once applied
  (``SHOW`` adds a unit), or ``ValueError`` saying what PostgreSQL expects and what was seen. Booleans: PostgreSQL's
  spellings (``on``, ``off``, ``true``, ``yes``, ``1``, unique prefixes, any case; YAML booleans)
  -> ``on``/``off``. Integers and reals: a number with an optional unit (``128MB``, ``10s``,
  ``1.5GB``; memory ``B kB MB GB TB``, time ``us ms s min h d``, case-sensitive) converted to the
  parameter's base unit, rounded as PostgreSQL rounds, checked against min/max; integers in
  hexadecimal or octal (which PostgreSQL also reads) are refused. Enums: one of the listed values, any
  case (PostgreSQL's hidden aliases such as ``true`` for ``on`` are refused). Strings: as given (a
  YAML boolean or list is refused; PostgreSQL may still canonicalise some, e.g. ``TimeZone``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import subprocess
import sys
from pathlib import Path

#: The vendored catalogue; ``python -m deployer.pg_parameters ROOTFS > CATALOGUE`` regenerates it.
CATALOGUE = Path(__file__).parent / "data" / "postgresql-15-parameters.tsv"
COLUMNS = ("name", "settable", "context", "vartype", "unit", "min_val", "max_val", "enumvals", "boot_val")
HEADER = f"""\
# PostgreSQL 15's parameters as its own binary reports them: pg_settings of a throwaway server
# (initdb into a tmpfs overlay of the VM image, in a private mount namespace), generated with
#   python -m deployer.pg_parameters /var/cache/pgha/images/<key>/rootfs > {CATALOGUE.relative_to(Path(__file__).parents[1])}
# settable: PostgreSQL accepts it in a configuration file (ALTER SYSTEM does); min/max in the base unit.
# {chr(9).join(COLUMNS)}
"""
#: Bytes per memory unit and milliseconds per time unit, largest first (PostgreSQL's tables).
MEMORY_UNITS = {"TB": 1024 ** 4, "GB": 1024 ** 3, "MB": 1024 ** 2, "kB": 1024, "B": 1}
TIME_UNITS = {"d": 86_400_000, "h": 3_600_000, "min": 60_000, "s": 1000, "ms": 1, "us": 0.001}
#: A base unit (pg_settings.unit) -> (the unit table it belongs to, its size in that table's terms).
BASE_UNITS = {"B": (MEMORY_UNITS, 1), "kB": (MEMORY_UNITS, 1024), "8kB": (MEMORY_UNITS, 8192),
              "MB": (MEMORY_UNITS, 1024 ** 2), "ms": (TIME_UNITS, 1), "s": (TIME_UNITS, 1000),
              "min": (TIME_UNITS, 60_000)}
BOOL_WORDS = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
NUMBER = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*")


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One row of the catalogue; ``min_val``/``max_val`` in the base ``unit`` (None: no bound)."""

    name: str
    settable: bool
    context: str
    vartype: str
    unit: str
    min_val: float | None
    max_val: float | None
    enumvals: tuple[str, ...]
    boot_val: str


@functools.cache
def catalogue() -> dict[str, Parameter]:
    """Every parameter, by lower-cased name."""
    out = {}
    for line in CATALOGUE.read_text().splitlines():
        if line.startswith("#"):
            continue
        name, settable, context_, vartype, unit, lo, hi, enums, boot = line.split("\t")
        out[name.lower()] = Parameter(name, settable == "yes", context_, vartype, unit, float(lo) if lo else None,
                                      float(hi) if hi else None, tuple(enums.split(",")) if enums else (), boot)
    return out


def parameter(name: str) -> Parameter:
    try:
        return catalogue()[name.lower()]
    except KeyError:
        raise KeyError(f"{name!r} is not a PostgreSQL 15 parameter (catalogue: {CATALOGUE.name})") from None


def context(name: str) -> str:
    return parameter(name).context


def needs_restart(name: str) -> bool:
    return context(name) == "postmaster"


def normalise(name: str, value: object) -> str:
    p = parameter(name)
    if p.vartype == "bool":
        return "on" if _bool(value) else "off"
    if isinstance(value, bool):
        if p.vartype == "enum" and {"on", "off"} <= set(p.enumvals):
            return "on" if value else "off"
        raise ValueError(f"expected {_expected(p)}, not a YAML boolean ({value}); quote it")
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"expected {_expected(p)}, seen {type(value).__name__} {value!r}")
    text = str(value)
    if p.vartype == "enum":
        match = [v for v in p.enumvals if v.lower() == text.strip().lower()]
        if not match:
            raise ValueError(f"expected {_expected(p)}, seen {text!r}")
        return match[0]
    if p.vartype == "string":
        return text
    number = _in_base_unit(p, text)
    if p.vartype == "integer":
        number = float(round(number))  # half to even, as rint()
    if (p.min_val is not None and number < p.min_val) or (p.max_val is not None and number > p.max_val):
        raise ValueError(f"expected {_expected(p)}, seen {text!r} ({_number(p, number)}{p.unit and ' x ' + p.unit})")
    return _number(p, number)


def _bool(value: object) -> bool:
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    text = str(value).strip().lower() if isinstance(value, str) else ""
    # PostgreSQL's parse_bool: a unique prefix of a word; "o" alone is ambiguous (on/off).
    seen = {BOOL_WORDS[w] for w in BOOL_WORDS if text and w.startswith(text) and not (text == "o")}
    if len(seen) != 1:
        raise ValueError(f"expected a boolean (on/off, true/false, yes/no, 1/0), seen {value!r}")
    return seen.pop()


def _in_base_unit(p: Parameter, text: str) -> float:
    match = NUMBER.fullmatch(text)
    if not match or (p.vartype == "integer" and re.fullmatch(r"\s*[+-]?0\d.*", text)):
        raise ValueError(f"expected {_expected(p)}, seen {text!r}")
    number, unit = float(match[1]), match[2]
    if not unit:
        return number
    table, base = BASE_UNITS.get(p.unit, ({}, 0))
    if unit not in table:
        raise ValueError(f"expected {_expected(p)}, seen {text!r}: "
                         + (f"{unit!r} is not one of {', '.join(table)}" if table else "it takes no unit"))
    units = list(table)
    value = number * table[unit] / base
    smaller = units[units.index(unit) + 1] if units.index(unit) + 1 < len(units) else None
    if smaller:  # a fractional value is rounded to the next smaller unit, as PostgreSQL does
        step = table[smaller] / base
        value = round(value / step) * step
    return value


def _number(p: Parameter, number: float) -> str:
    return str(int(number)) if p.vartype == "integer" else f"{number:g}"


def _expected(p: Parameter) -> str:
    if p.vartype == "enum":
        return f"one of {', '.join(p.enumvals)}"
    if p.vartype in ("integer", "real"):
        bound = f"{_number(p, p.min_val)} .. {_number(p, p.max_val)}" if p.min_val is not None else "any"
        unit = f" (base unit {p.unit}; or with a unit: {', '.join(BASE_UNITS[p.unit][0])})" if p.unit else ""
        return f"{'an integer' if p.vartype == 'integer' else 'a number'} in {bound}{unit}"
    return f"a {p.vartype}"


#: Runs in a private mount namespace (``unshare --mount``), as root, with the image's rootfs as $1.
GENERATE = r"""set -eu
work=$(mktemp -d)
mount --make-rprivate /
mount -t tmpfs tmpfs "$work"
mkdir "$work/upper" "$work/work" "$work/root"
mount -t overlay overlay -o "lowerdir=$1,upperdir=$work/upper,workdir=$work/work" "$work/root"
mount --rbind /dev "$work/root/dev"
mount -t proc proc "$work/root/proc"
chroot --userspec=postgres:postgres "$work/root" /bin/sh -eu <<'IN'
export PATH=/usr/lib/postgresql/15/bin:$PATH LC_ALL=C.UTF-8
cd /tmp
initdb -D /tmp/pg -U postgres -A trust >/dev/null
pg_ctl -D /tmp/pg -o "-c listen_addresses= -k /tmp" -w -l /tmp/log start >/dev/null
psql -h /tmp -XAtq -d postgres -c "SELECT format('ALTER SYSTEM RESET %I;', name) FROM pg_settings" |
  psql -h /tmp -Xq -d postgres 2>&1 >/dev/null | sed -n 's/^.*ERROR:  parameter "\(.*\)" cannot be changed$/\1/p' >/tmp/fixed
psql -h /tmp -XAtq -d postgres -F '	' <<'SQL'
CREATE TEMP TABLE fixed (name text);
COPY fixed FROM '/tmp/fixed';
SELECT name, CASE WHEN name IN (SELECT name FROM fixed) THEN 'no' ELSE 'yes' END, context, vartype,
  coalesce(unit, ''), coalesce(min_val, ''), coalesce(max_val, ''), array_to_string(enumvals, ','),
  coalesce(boot_val, '') FROM pg_settings ORDER BY lower(name);
SQL
pg_ctl -D /tmp/pg -w stop >/dev/null
IN
"""


def generate(rootfs: Path) -> str:
    """The catalogue's text from the PostgreSQL 15 in ``rootfs`` (a VM image; read-only: a tmpfs
    overlay takes every write, and the mount namespace goes with the process). Needs root."""
    proc = subprocess.run(["unshare", "--mount", "sh", "-c", GENERATE, "sh", str(rootfs)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"generating the parameter catalogue in {rootfs} failed: {proc.stderr.strip()[-2000:]}")
    return HEADER + proc.stdout


if __name__ == "__main__":
    sys.stdout.write(generate(Path(sys.argv[1])))
