"""The direction of imports is the architecture: backend → matching, notifications; never the reverse."""

from __future__ import annotations

import ast
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


def test_only_the_fcm_sender_imports_firebase_admin() -> None:
    importers = {f for f, n in _imports("notifications") if n == "firebase_admin"}
    assert importers == {"notifications/fcm.py"}
