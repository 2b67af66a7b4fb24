"""Automations keep the house's layers: queries only in hub/store, the evaluator pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HUB = Path(__file__).parents[2] / "hub"
SERVICES = [*sorted((HUB / "automations").glob("*.py")), HUB / "api/routes/automations.py"]
QUERY_BUILDERS = {"select", "update", "delete", "insert", "text"}
QUERY_CALLS = {"exec", "execute", "get", "scalar", "scalars", "query", "delete"}
# What the pure modules may import of ours (nothing with a database or a socket).
PURE = ["vocabulary", "rules", "problems", "facts", "templates", "engine", "catalogue",
        "learning", "menu", "exchange", "occurrence"]


def queries_in(source: str) -> list[str]:
    """Every query a module builds or runs itself, as ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] in ("sqlalchemy", "sqlmodel"):
            found += [f"{node.lineno}: imports {a.name}" for a in node.names
                      if a.name in QUERY_BUILDERS]
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: imports {a.name}" for a in node.names
                      if a.name == "sqlalchemy"]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                isinstance(node.func.value, ast.Name) and node.func.value.id == "session" \
                and node.func.attr in QUERY_CALLS:
            found.append(f"{node.lineno}: session.{node.func.attr}")
    return found


def test_the_check_finds_a_query() -> None:
    assert queries_in("from sqlmodel import select\nrow = session.get(Device, 'x')\n") == [
        "1: imports select", "2: session.get"]


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.name)
def test_no_query_outside_the_store(path: Path) -> None:
    assert queries_in(path.read_text()) == []


@pytest.mark.parametrize("name", PURE)
def test_the_pure_modules_touch_no_database(name: str) -> None:
    tree = ast.parse((HUB / "automations" / f"{name}.py").read_text())
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module} | {
        a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert not {m for m in imported
                if m.split(".")[0] in ("sqlalchemy", "sqlmodel", "paho", "fastapi")
                or m in ("hub.db", "hub.models") or m.startswith("hub.store")}
