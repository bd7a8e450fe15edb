"""The shape of the house, checked from the source: layers, sizes and import cycles.

Every module of ``engine/`` and ``adapters/`` is parsed with :mod:`ast` (nothing is
imported). The rules:

* no import cycle among our modules;
* no ``engine/`` module imports ``trio_websocket``, ``wsproto`` or ``h11`` (the wire
  libraries belong to the adapters);
* the vocabulary (:data:`VOCABULARY`) imports nothing from ``adapters/`` and, from
  ``engine/``, only the vocabulary;
* ``adapters/`` imports from ``engine/`` only the vocabulary;
* no module over :data:`MAX_MODULE_LINES` lines (data tables aside), no class over
  :data:`MAX_CLASS_LINES`.

How imports count. An import under ``if TYPE_CHECKING:`` never runs, so it is no
edge of the cycle graph (it still counts for the layering rules: a type from a
layer is a dependency on it). An import inside a function is an edge: it runs
on the first call, and a cycle it closes is a cycle all the same, only one that
fails later and less often. Importing ``a.b.c`` runs ``a/__init__.py`` and
``a/b/__init__.py`` first, so it is an edge to those packages too (but a module's
edge to a package it lives in is left out: that package is always initialised
before the module, whoever imports it). That is the edge that made
``engine/__init__.py`` load names lazily: an adapter importing ``engine.errors``
ran the package's ``__init__``, which imported the stream assembly, which
imported the adapter.

Today's offenders outside this change are listed in :data:`KNOWN_EXCEPTIONS`, each
with the work that removes it. A listed offender that no longer offends fails the
test too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
from typing import Final

import pytest

ROOT: Final = pathlib.Path(__file__).resolve().parents[1]
PACKAGES: Final = ("engine", "adapters")
MAX_MODULE_LINES: Final = 400
MAX_CLASS_LINES: Final = 250
WIRE_LIBRARIES: Final = frozenset({"trio_websocket", "wsproto", "h11"})

VOCABULARY: Final = frozenset(
    {
        "engine",  # the package's face re-exports only the vocabulary
        "engine.events",
        "engine.errors",
        "engine.results",
        "engine.config",
        "engine.messages",
        "engine.policy",  # RestartPolicy is part of SessionConfig; the rest is pure maths on it
        "engine.ratelimit",  # StartLimiter, re-exported by the package
        "engine._util",  # unwrap_single_group: trio only
    }
)
"""The modules every layer may import: types and pure helpers, leaves of the graph."""

DATA_TABLES: Final = frozenset({"adapters/dashscope/languages.py"})
"""Modules that are mostly a table of data; exempt from the line limit."""

KNOWN_EXCEPTIONS: Final[dict[tuple[str, str], str]] = {
    # rule, subject: the work that removes it (owner)
}


class Module:
    """One parsed module: its dotted name, path, text and syntax tree."""

    def __init__(self, path: pathlib.Path, text: str | None = None) -> None:
        self.path = path
        self.rel = path.relative_to(ROOT).as_posix()
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        self.is_package = parts[-1] == "__init__"
        if self.is_package:
            parts.pop()
        self.name = ".".join(parts)
        self.text = path.read_text(encoding="utf-8") if text is None else text
        self.tree = ast.parse(self.text, filename=self.rel)

    def imports(self) -> list[tuple[str, bool]]:
        """Every module name this one imports, and whether that import runs.

        ``from a import b`` names both ``a`` and ``a.b`` (``b`` may be a submodule);
        an import under ``if TYPE_CHECKING:`` does not run.
        """
        out: list[tuple[str, bool]] = []

        def visit(node: ast.AST, runs: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child.test):
                    for stmt in child.body:
                        visit_stmt(stmt, runs=False)
                    for stmt in child.orelse:
                        visit_stmt(stmt, runs=runs)
                else:
                    visit_stmt(child, runs=runs)

        def visit_stmt(node: ast.AST, runs: bool) -> None:
            if isinstance(node, ast.Import):
                out.extend((alias.name, runs) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = self._resolve(node)
                out.append((base, runs))
                out.extend((f"{base}.{alias.name}", runs) for alias in node.names)
            else:
                visit(node, runs)

        visit(self.tree, runs=True)
        return out

    def _resolve(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self.name.split(".") if self.is_package else self.name.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        return ".".join([*package, *([node.module] if node.module else [])])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _load() -> dict[str, Module]:
    modules = [Module(path) for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))]
    return {module.name: module for module in modules}


MODULES: Final = _load()


def _ours(name: str) -> str | None:
    """The module of ours that ``name`` (a module, or a name in one) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _packages_run(target: str) -> list[str]:
    """``target`` and the packages whose ``__init__`` runs before it."""
    parts = target.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours its running imports execute."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, module in MODULES.items():
        own = set(_packages_run(name))
        for imported, runs in module.imports():
            target = _ours(imported)
            if not runs or target is None:
                continue
            graph[name].update(
                step for step in _packages_run(target) if step in MODULES and step not in own
            )
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _class_lengths(module: Module) -> dict[str, int]:
    return {
        node.name: (node.end_lineno or node.lineno) - node.lineno + 1
        for node in ast.walk(module.tree)
        if isinstance(node, ast.ClassDef)
    }


# ---------------------------------------------------------------- offences per rule


def offences(rule: str) -> set[str]:
    found: set[str] = set()
    if rule == "cycle":
        found = {" <> ".join(component) for component in cycles(import_graph())}
    for module in MODULES.values():
        if rule == "wire" and module.name.startswith("engine"):
            found |= {
                f"{module.rel}: {imported.split('.')[0]}"
                for imported, _ in module.imports()
                if imported.split(".")[0] in WIRE_LIBRARIES
            }
        elif rule == "vocabulary" and module.name in VOCABULARY:
            found |= {
                f"{module.rel} -> {target}"
                for imported, _ in module.imports()
                if (target := _ours(imported)) is not None
                and target != module.name
                and target not in VOCABULARY
            }
        elif rule == "layer" and module.name.startswith("adapters"):
            found |= {
                f"{module.rel} -> {target}"
                for imported, _ in module.imports()
                if (target := _ours(imported)) is not None
                and target.startswith("engine")
                and target not in VOCABULARY
            }
        elif rule == "lines" and module.rel not in DATA_TABLES:
            if len(module.text.splitlines()) > MAX_MODULE_LINES:
                found.add(module.rel)
        elif rule == "class":
            found |= {
                f"{module.rel}::{name}"
                for name, length in _class_lengths(module).items()
                if length > MAX_CLASS_LINES
            }
    return found


RULES: Final = {
    "cycle": "an import cycle",
    "wire": "an engine module imports a wire library",
    "vocabulary": "a vocabulary module imports beyond the vocabulary",
    "layer": "an adapter imports engine code that is not vocabulary",
    "lines": f"a module over {MAX_MODULE_LINES} lines",
    "class": f"a class over {MAX_CLASS_LINES} lines",
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_rule_holds_but_for_the_known_exceptions(rule: str) -> None:
    """Every offence is a known exception, and every known exception still offends."""
    found = offences(rule)
    known = {subject for (kind, subject) in KNOWN_EXCEPTIONS if kind == rule}
    new = sorted(found - known)
    assert not new, f"{RULES[rule]}: {new}"
    fixed = sorted(known - found)
    assert not fixed, f"no longer offends, remove from KNOWN_EXCEPTIONS: {fixed}"


def test_the_exceptions_name_rules_and_owners() -> None:
    """Each known exception is for a rule this file checks and names who removes it."""
    for (rule, subject), owner in KNOWN_EXCEPTIONS.items():
        assert rule in RULES, subject
        assert owner.endswith(("(conn)", "(cli)", "(split)", "(sig)", "(tests)")), owner


def test_the_vocabulary_exists() -> None:
    """Every declared vocabulary module is a module (a rename must update the list)."""
    assert MODULES.keys() >= VOCABULARY


_IMPORT_EACH_FIRST: Final = """
import importlib, sys
failed, same_run = [], set()
for name in sys.argv[1:]:  # sorted: a package before what is under it
    if name in same_run:
        continue
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("engine", "adapters")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
        continue
    same_run.update(m for m in sys.modules if m.startswith(name + "."))
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_can_be_imported_first() -> None:
    """Whichever of our modules a program imports first, it imports: the graph's claim, run.

    One interpreter, our modules forgotten between imports (third-party ones stay
    loaded, so this takes seconds): an adapter imported first runs engine/__init__
    before its own body, which is where a re-export of the assembly would fail. A
    module that its package's import (run first, as names sort) has already loaded is
    not imported again: importing it first runs that very package import and then
    finds it loaded, the same run (88 of 234 imports, two thirds of the CPU).
    """
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH_FIRST, *sorted(MODULES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


class TestTheGraph:
    """The checker itself: it sees the edges that matter and leaves out the ones that do not."""

    def test_a_package_init_is_an_edge_from_outside_it(self) -> None:
        """Importing engine.errors from an adapter runs engine/__init__.py: an edge to ``engine``."""
        graph = import_graph()
        assert "engine" in graph["adapters.dashscope.models"]
        assert "engine" not in graph["engine.actors.capture"]

    def test_type_checking_imports_do_not_run_and_function_imports_do(self) -> None:
        """An import under TYPE_CHECKING never runs; one in a function runs when called."""
        source = (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    import engine.stream\n"
            "def f():\n    from ..actors import session\n"
        )
        module = Module(ROOT / "engine" / "daemon" / "x.py", source)
        imports = module.imports()
        assert ("engine.stream", False) in imports
        assert ("engine.actors.session", True) in imports

    def test_a_cycle_is_found(self) -> None:
        """Tarjan finds a three-module loop and ignores a tail into it."""
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
        assert cycles(graph) == [["a", "b", "c"]]
