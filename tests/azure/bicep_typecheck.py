"""A type check of ``bicep/`` against the type data the Bicep compiler uses (Azure/bicep-types-az).

There is no Bicep CLI here, so this does offline what its property diagnostics do: every resource
body (each loop body, both branches of each conditional) is walked against the ``ObjectType`` of
its ``type@apiVersion``, and an unknown property, a write to a read-only one, a missing required
one, a value of the wrong kind, a string outside a closed enum or a misspelt value of an open one
(most ARM enums take any string besides their known values) is a problem. A value that is an
expression (a function, an accessor, an interpolation) is not known offline and passes; a symbol
stands for every value it can take: a variable's value, a parameter's default, its ``@allowed``
values, and what each module declaration passes for it. ``null`` (``cond ? null : {...}``) leaves a
property out, as Bicep and ARM read it: it passes where the property is not required, and is a
problem where it is.

The type data (``bicep-types/``) is the subset of the upstream ``types.json`` that the templates'
resource types reach, renumbered (``trim``); ``TYPES`` names the files.
"""

from __future__ import annotations

import difflib
import functools
import json
from pathlib import Path

from pycep import BicepParser

DATA = Path(__file__).resolve().parent / "bicep-types"
#: Each vendored file, by the upstream ``types.json`` it was trimmed from (``<provider>/<version>``).
TYPES = {"network/2024-05-01": DATA / "network-2024-05-01.json", "compute/2024-07-01": DATA / "compute-2024-07-01.json",
         "storage/2023-05-01": DATA / "storage-2023-05-01.json"}
#: Bicep's own keywords in a resource body, which no type declares.
KEYWORDS = {"dependsOn", "scope", "parent"}
REQUIRED, READ_ONLY = 1, 2
#: An open enum (known values or any string) refuses a string this close to a known value but not
#: equal: a typo, not a new value.
TYPO_CUTOFF = 0.8


def _refs(node):
    return (int(n["$ref"].rpartition("/")[2]) for n in _walk(node) if isinstance(n, dict) and set(n) == {"$ref"})


def _renumber(node, new: dict[int, int]):
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            return {"$ref": f"#/{new[int(node['$ref'].rpartition('/')[2])]}"}
        return {k: _renumber(v, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_renumber(v, new) for v in node]
    return node


def trim(types: list[dict], resources: set[str]) -> list[dict]:
    """The types that the ``ResourceType``s named in ``resources`` reach, in upstream order, with
    their references renumbered."""
    seen: set[int] = set()
    todo = [i for i, t in enumerate(types) if t["$type"] == "ResourceType" and t["name"] in resources]
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.add(i)
            todo.extend(_refs(types[i]))
    new = {old: n for n, old in enumerate(sorted(seen))}
    return [_renumber(types[old], new) for old in sorted(seen)]


def dump(types: list[dict]) -> str:
    """One type per line, so a diff of the vendored data names the types that changed."""
    return "[\n" + ",\n".join(json.dumps(t, sort_keys=True) for t in types) + "\n]\n"


class Index:
    """Every vendored type file, resources found by ``type@apiVersion``."""

    def __init__(self, files=TYPES.values()):
        self.files = [json.loads(Path(f).read_text()) for f in files]
        self.resources = {t["name"]: (types, t) for types in self.files for t in types if t["$type"] == "ResourceType"}

    def body(self, resource: str) -> tuple[list[dict], dict] | None:
        found = self.resources.get(resource)
        return None if found is None else (found[0], found[0][int(found[1]["body"]["$ref"].rpartition("/")[2])])


@functools.cache
def parse(path: Path) -> dict:
    return BicepParser().parse(file_path=path)


def _body(config: dict) -> dict:
    """A declaration's body: that of each iteration of a loop (``[for ...: {...}]``), or the one
    deployed under a condition (``= if (...) {...}``)."""
    while "loop_type" in config or "condition" in config:
        config = config["config"]
    return config


class Template:
    """One parsed Bicep file: its symbols, and the values each can take (``values``)."""

    def __init__(self, path: Path, callers: list[tuple[Template, dict]]):
        self.path, self.tree, self.callers = path, parse(path), callers
        loops = [n["loop_type"]["detail"] for n in _walk(self.tree) if isinstance(n, dict) and "loop_type" in n]
        self.loop_symbols = {d.get(k) for d in loops for k in ("item_name", "index_name")} - {None}
        self.symbols = set().union(*(self.tree.get(k, {}) for k in ("parameters", "variables", "resources", "modules")))

    def values(self, name: str) -> list[tuple[object, Template]]:
        """What the symbol ``name`` can be, each with the template it is written in; ``[]`` when it is
        no parameter or variable (a resource, a module, a loop variable: known only at deploy time)."""
        if name in self.tree.get("variables", {}):
            return [(self.tree["variables"][name]["value"], self)]
        param = self.tree.get("parameters", {}).get(name)
        if param is None:
            return []
        found = [(param["default"], self)] if param.get("default") is not None else []
        found += [(v, self) for d in param.get("decorators", []) if d["type"] == "allowed" for v in d["argument"]]
        return found + [(passed[name], caller) for caller, passed in self.callers if name in passed]


def _walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


def _kind(value) -> str:
    return {bool: "bool", int: "int", str: "string", dict: "object", list: "array"}.get(type(value), type(value).__name__)


class Checker:
    """Walks values against types; ``problems`` collects one line per problem."""

    def __init__(self, types: list[dict]):
        self.types, self.problems = types, []

    def resolve(self, ref: dict) -> dict:
        return self.types[int(ref["$ref"].rpartition("/")[2])]

    def check(self, value, type_: dict, where: str, template: Template, seen: frozenset = frozenset(),
              optional: bool = False) -> None:
        """``value`` (a pycep tree written in ``template``) against ``type_`` (resolved); ``optional``:
        the value is that of a property the type does not require, so ``null`` (left out) passes."""
        if value is None:
            if not optional:
                self._problem(where, "null where a value is required")
            return
        if isinstance(value, dict) and "loop_type" in value:  # [for ...: body] stands where an array goes
            if type_["$type"] == "ArrayType":
                self.check(value["config"], self.resolve(type_["itemType"]), f"{where}[*]", template, seen)
            return
        if isinstance(value, dict) and "operator" in value:
            operator = value["operator"]
            if operator["type"] == "conditional":
                for branch in ("true_value", "false_value"):
                    self.check(operator["operands"][branch], type_, f"{where}<{branch}>", template, seen, optional)
            return  # any other operator is an expression
        if isinstance(value, dict) and "function" in value:
            return
        if isinstance(value, str) and (value in template.symbols or value in template.loop_symbols):
            if (template.path, value) not in seen:
                for candidate, origin in template.values(value):
                    self.check(candidate, type_, f"{where}<{value}>", origin, seen | {(template.path, value)}, optional)
            return
        if isinstance(value, str) and "${" in value:
            value = "<interpolated>"  # a string, but not one known offline
        getattr(self, "_" + type_["$type"], self._other)(value, type_, where, template, seen)

    def _problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")

    def _ObjectType(self, value, type_, where, template, seen, extra: dict | None = None) -> None:
        if not isinstance(value, dict):
            return self._problem(where, f"expected an object ({type_.get('name')}), got {_kind(value)} {value!r}")
        properties = {**(extra or {}), **type_.get("properties", {})}
        for key, item in value.items():
            prop = properties.get(key)
            if prop is None:
                if "additionalProperties" in type_:
                    self.check(item, self.resolve(type_["additionalProperties"]), f"{where}.{key}", template, seen)
                    continue
                close = difflib.get_close_matches(key, properties, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self._problem(f"{where}.{key}", f"unknown property of {type_.get('name')}{hint}")
            elif prop["flags"] & READ_ONLY:
                self._problem(f"{where}.{key}", f"read-only property of {type_.get('name')}: it cannot be written")
            else:
                self.check(item, self.resolve(prop["type"]), f"{where}.{key}", template, seen,
                           optional=not prop["flags"] & REQUIRED)
        for key, prop in properties.items():
            if prop["flags"] & REQUIRED and not prop["flags"] & READ_ONLY and key not in value:
                self._problem(f"{where}.{key}", f"missing required property of {type_.get('name')}")

    def _DiscriminatedObjectType(self, value, type_, where, template, seen) -> None:
        chosen = type_["elements"].get(value.get(type_["discriminator"])) if isinstance(value, dict) else None
        if chosen is None:
            return self._problem(where, f"{type_['discriminator']} must be one of {sorted(type_['elements'])}")
        self._ObjectType(value, self.resolve(chosen), where, template, seen, extra=type_["baseProperties"])

    def _ArrayType(self, value, type_, where, template, seen) -> None:
        if not isinstance(value, list):
            return self._problem(where, f"expected an array, got {_kind(value)} {value!r}")
        for i, item in enumerate(value):
            self.check(item, self.resolve(type_["itemType"]), f"{where}[{i}]", template, seen)

    def _UnionType(self, value, type_, where, template, seen) -> None:
        elements = [self.resolve(e) for e in type_["elements"]]
        known = sorted(e["value"] for e in elements if e["$type"] == "StringLiteralType")
        if isinstance(value, str) and known and value != "<interpolated>" and value not in known:
            if len(known) == len(elements):  # a closed enum
                return self._problem(where, f"{value!r} is not one of {known}")
            close = difflib.get_close_matches(value, known, n=1, cutoff=TYPO_CUTOFF)
            if close:  # an open enum takes any string, but this one is a misspelt known value
                return self._problem(where, f"{value!r} is no known value (did you mean {close[0]!r}?)")
        for element in elements:  # the value passes when one member takes it
            trial = Checker(self.types)
            trial.check(value, element, where, template, seen)
            if not trial.problems:
                return
        self._problem(where, f"{value!r} matches no member of the union ({known or 'no string literal'})")

    def _StringLiteralType(self, value, type_, where, template, seen) -> None:
        if value not in (type_["value"], "<interpolated>"):
            self._problem(where, f"expected {type_['value']!r}, got {value!r}")

    def _IntegerType(self, value, type_, where, template, seen) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            return self._problem(where, f"expected an int, got {_kind(value)} {value!r}")
        low, high = type_.get("minValue"), type_.get("maxValue")
        if (low is not None and value < low) or (high is not None and value > high):
            self._problem(where, f"{value} is outside {low}..{high}")

    def _primitive(self, value, type_, where, template, seen) -> None:
        expected = {"StringType": str, "BooleanType": bool}[type_["$type"]]
        if not isinstance(value, expected):
            self._problem(where, f"expected a {_kind(expected())}, got {_kind(value)} {value!r}")

    _StringType = _BooleanType = _primitive

    def _other(self, value, type_, where, template, seen) -> None:
        """``AnyType`` and anything this check does not model take every value."""


def templates(main: Path) -> list[Template]:
    """``main`` and every module it declares, each module with the declarations that call it."""
    found: dict[Path, Template] = {}
    callers: dict[Path, list[tuple[Template, dict]]] = {}
    todo = [main.resolve()]
    while todo:
        path = todo.pop(0)
        found[path] = template = Template(path, callers.setdefault(path, []))
        for module in template.tree.get("modules", {}).values():
            target = (path.parent / module["detail"]["path"]).resolve()
            callers.setdefault(target, []).append((template, _body(module["config"]).get("params", {})))
            if target not in found and target not in todo:
                todo.append(target)
    return list(found.values())


def check_templates(main: Path, index: Index) -> tuple[list[str], list[str], set[str]]:
    """(problems, resources checked as ``file: symbol``, resource types the index does not hold) of
    ``main`` and every module it declares."""
    problems, checked, unknown = [], [], set()
    for template in templates(main):
        for symbol, resource in template.tree.get("resources", {}).items():
            name = f"{resource['type']}@{resource['api_version']}"
            found = index.body(name)
            if found is None:
                unknown.add(name)
            elif not resource["existing"]:  # an existing resource is only named, not written
                checker = Checker(found[0])
                body = {k: v for k, v in _body(resource["config"]).items() if k not in KEYWORDS}
                checker.check(body, found[1], f"{template.path.name}: {symbol}", template)
                problems += checker.problems
                checked.append(f"{template.path.name}: {symbol}")
    return problems, checked, unknown
