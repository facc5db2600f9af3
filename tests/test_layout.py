"""The layout shows the architecture: no import loop among the project's modules, a local run
imports nothing of Azure, and the README's layout section matches the tree."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.paths import REPO

PACKAGES = ("deployer", "load", "suites")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    found = {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    found["conftest"] = REPO / "conftest.py"
    return found


class Imports(ast.NodeVisitor):
    """Every module an import statement names, anywhere in the file (function-level imports too),
    except under ``if TYPE_CHECKING:`` (never executed)."""

    def __init__(self):
        self.names: list[tuple[str, list[str]]] = []

    def visit_If(self, node: ast.If) -> None:
        if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names += [(alias.name, []) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        assert node.level == 0, "the project uses absolute imports"
        self.names.append((node.module, [alias.name for alias in node.names]))


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules importing it executes: the named module, or ``pkg.name`` for
    ``from pkg import name`` when that is a module, plus the packages around it that the importer
    is not already inside (their ``__init__`` runs first)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        visitor = Imports()
        visitor.visit(ast.parse(path.read_text()))
        edges = set()
        for module, names in visitor.names:
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules] or [module]
            for target in targets:
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    prefix = ".".join(parts[:i])
                    inside = name == prefix or name.startswith(prefix + ".")
                    if prefix in modules and prefix != name and (i == len(parts) or not inside):
                        edges.add(prefix)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_loop_among_the_project_modules():
    graph = import_graph(project_modules())
    assert graph["deployer.targets.local.target"] >= {"deployer.targets.base", "deployer.inventory"}
    assert cycles(graph) == []


def test_the_loop_check_finds_a_loop():
    """Negative control: the registry importing a concrete target, which imports the registry."""
    graph = import_graph(project_modules())
    graph["deployer.targets.base"] = graph["deployer.targets.base"] | {"deployer.targets.local.target"}
    assert any({"deployer.targets.base", "deployer.targets.local.target"} <= set(c) for c in cycles(graph))


def test_the_local_target_imports_nothing_of_azure():
    code = ("import sys; from deployer.targets import get; get('local'); "
            "print([m for m in sys.modules if m.startswith('azure')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout


def _layout_section() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("directory", ["deployer", "deployer/drills", "deployer/targets", "deployer/targets/local",
                                       "deployer/targets/azure", "load", "suites", "ansible/roles"])
def test_the_readme_layout_names_every_module_and_only_existing_ones(directory):
    """Every module of ``directory`` is named somewhere in the README; every path the layout section
    names exists."""
    section = _layout_section()
    named = {m.strip("/").removesuffix(".py") for m in re.findall(r"`([\w./-]+)`", (REPO / "README.md").read_text())}
    here = {p.name.removesuffix(".py") for p in (REPO / directory).iterdir()
            if p.name != "__init__.py" and not p.name.startswith((".", "__")) and p.suffix in (".py", "")}
    missing = sorted(n for n in here if n not in named and f"{directory}/{n}" not in named)
    assert not missing, f"README layout does not mention {missing} of {directory}/"
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True, cwd=REPO).stdout.split()
    everything = {str(Path(f).with_suffix("")) for f in tracked} | {str(p) for f in tracked for p in Path(f).parents}
    for path in (m.strip("/").removesuffix(".py") for m in re.findall(r"`([\w./-]+/[\w./-]*)`", section)):
        assert any(p == path or p.endswith("/" + path) for p in everything), \
            f"README layout names {path}, which is not in the tree"
