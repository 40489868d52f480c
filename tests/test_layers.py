"""The folders are the architecture: each side imports only what sits below it
(docs/architecture.md). Every import statement counts, those inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "runner"

# What each part of the package must never import, directly or lazily.
FORBIDDEN = {
    "plan": ("click", "pg8000", "runner.run", "runner.connect", "runner.review", "runner.cli", "runner.output"),
    "run": ("click", "runner.connect", "runner.review", "runner.cli", "runner.output"),
    "connect": ("click", "runner.plan", "runner.run", "runner.review", "runner.cli", "runner.output"),
    "review": ("click", "pg8000", "runner.connect", "runner.cli", "runner.output", "runner.run.engine", "runner.run.wire"),
    "errors.py": ("click", "pg8000", "runner."),
    "output.py": ("click", "pg8000", "runner.run", "runner.connect", "runner.review", "runner.cli"),
    "secrets.py": ("click", "pg8000", "runner."),
    # the library API: the command is built on it, never the other way
    "api": ("click", "pg8000", "runner.cli"),
    # fleets: many runs at once, under the API
    "fleet": ("click", "pg8000", "runner.cli", "runner.api"),
    "events.py": ("click", "pg8000", "runner.run", "runner.connect", "runner.review", "runner.cli"),
    "report.py": ("click", "pg8000", "runner.run", "runner.connect", "runner.cli"),
    # the command: click declarations over the API; the driver stays below
    "cli": ("pg8000",),
}  # fmt: skip


def _imports(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a module of the package."""
    module = module or ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # `from . import x` names a module too
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def _part(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0]


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _part(p) in FORBIDDEN)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path: Path) -> None:
    banned = FORBIDDEN[_part(path)]
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for line, name in _imports(path)
        if any(
            name == b.rstrip(".") or name.startswith(b if b.endswith(".") else b + ".")
            for b in banned
        )
    ]
    assert wrong == []


def test_every_side_has_modules() -> None:
    sides = {_part(p) for p in MODULES}
    assert sides == set(FORBIDDEN)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    # The check must be able to fail: a function-level relative import of the CLI is caught.
    probe = PACKAGE / "plan" / "model.py"
    assert "runner.errors" in {name for _, name in _imports(probe)}
    fake = tmp_path / "probe.py"
    fake.write_text("def f():\n    from ..cli import main\n    import click\n")
    names = {n for _, n in _imports(fake, "runner.plan.probe")}
    assert names >= {"runner.cli", "runner.cli.main", "click"}


def _graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports, lazily or not."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        name = module if path.name != "__init__.py" else module + ".__init__"
        graph[module] = {
            imported
            for _, imported in _imports(path, name)
            if imported in modules and imported != module
        }
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph.get(module, ())):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_one_that_imports_it() -> None:
    """No import cycle, counting the imports inside functions: each module can be read (and
    tested) with only what it imports below it."""
    assert _cycles(_graph()) == []


def test_the_cycle_check_can_fail() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
