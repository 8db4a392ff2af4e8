"""The package boundaries the architecture promises, checked on the source itself.

generation/ never imports discord (so GPU workers need no Discord stack); bot/ never imports
torch or diffusers (so the bot process stays light and can run without a GPU); no module imports itself
back through others (every import counts: inside functions and under TYPE_CHECKING too, because a
circle there is still two files that cannot be understood or changed apart).
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"generation": {"discord"}, "bot": {"torch", "diffusers", "transformers"}}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_forbidden_modules(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) & FORBIDDEN[package]) for path in files
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import discord.ext\nfrom torch import nn\n")
    assert _imported_roots(sample) == {"discord", "torch"}


# --------------------------------------------------------------------------- import circles


def _modules(packages: tuple[str, ...] = ("bot", "generation")) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported_names(path: Path, module: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(module named, names imported from it) for every import in ``path``, relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            yield base, tuple(alias.name for alias in node.names)


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the project modules it imports. ``from a import b`` is an edge to a.b when that is a module,
    else to a; a package's own __init__, which runs before any of its modules, is not counted as imported."""

    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for base, names in _imported_names(path, module):
            submodules = [f"{base}.{name}" for name in names if f"{base}.{name}" in modules]
            targets.update(submodules)
            if not names or len(submodules) < len(names):
                targets.add(owner(base))
        graph[module] = targets - {module, ""}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_circle_among_the_projects_modules() -> None:
    graph = import_graph(_modules())
    assert len(graph) > 50 and any(graph.values())  # the walk found the modules and their imports
    cycles = import_cycles(graph)
    assert not cycles, "\n".join(" → ".join(group) for group in cycles)


def test_the_cycle_finder_sees_a_circle_through_type_checking_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\n")
    (package / "c.py").write_text("def f():\n    from pkg import a\n")
    (package / "d.py").write_text("import pkg.a\n")
    modules = {"pkg": package / "__init__.py", **{f"pkg.{n}": package / f"{n}.py" for n in "abcd"}}
    assert import_cycles(import_graph(modules)) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_benchmarks_take_their_helpers_from_testkit_not_from_the_tests() -> None:
    """A benchmark shares the tests' stand-ins (testkit/) but never the test tree's code: moving or rewriting a
    test must not break a benchmark. (They may read the public-domain photos in tests/fixtures.)"""
    offenders = {}
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        imports_tests = "tests" in _imported_roots(path)
        tests_on_path = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                         if ("sys.path" in line or "PYTHONPATH" in line) and '"tests"' in line]
        if imports_tests or tests_on_path:
            offenders[path.name] = tests_on_path or ["import tests…"]
    assert not offenders, offenders
