"""The direction of imports is the architecture: backend → matching, notifications; never the reverse."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> list[tuple[str, str]]:
    """(module file, imported top-level package) for every absolute import, nested ones included."""
    found = []
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [(str(path.relative_to(ROOT)), n.split(".")[0]) for n in names]
    return found


@pytest.mark.parametrize("package", ["matching", "notifications"])
def test_core_packages_do_not_import_the_web_layer(package: str) -> None:
    assert [(f, n) for f, n in _imports(package) if n in ("backend", "litestar")] == []


def test_the_simulator_is_a_client_of_the_http_api_only() -> None:
    assert [(f, n) for f, n in _imports("simulator") if n in ("backend", "litestar", "sqlalchemy", "psycopg")] == []


def test_only_the_fcm_sender_imports_firebase_admin() -> None:
    importers = {f for f, n in _imports("notifications") if n == "firebase_admin"}
    assert importers == {"notifications/fcm.py"}


def _module_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports, at the top or inside a function alike."""
    files = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    graph: dict[str, set[str]] = {module: set() for module in files}
    for module, path in files.items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                while name and name not in files:  # the innermost module of ours that the name lies in
                    name = name.rpartition(".")[0]
                # A module may import its own package (`from backend.jobs import services` in backend.jobs.x).
                if name and name != module and not module.startswith(name + "."):
                    graph[module].add(name)
    return graph


def test_there_is_no_import_cycle_between_modules() -> None:
    graph = _module_graph(("backend", "matching", "notifications"))
    assert len(graph) > 30 and graph["backend.jobs.dispatch"], "the graph should hold every module and its imports"
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail("import cycle: " + " -> ".join(exc.args[1]))


def test_the_cycle_check_sees_a_cycle_through_a_function_level_import(tmp_path, monkeypatch) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg.a import x\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)

    with pytest.raises(CycleError):
        tuple(TopologicalSorter(_module_graph(("pkg",))).static_order())
