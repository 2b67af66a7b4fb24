"""One way into the database: every query of the hub is in hub/store/ (STYLE.md rule 6).

Walks the syntax tree of every module under hub/ outside the store and fails, naming
file:line, on what builds or runs a query: importing select/update/delete/insert/text
from sqlmodel or sqlalchemy (or their submodules), calling them through ``sa.``, and
calling exec/execute/exec_driver_sql/scalar/scalars/query on anything, or ``get`` on a session.
Services may still own the unit of work: add, flush, commit, refresh, begin_nested.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hub

HUB = Path(hub.__file__).parent
# The engine and the session factory, the schema's versions (migrate.py and Alembic's
# scripts), SQLite's online backup and its integrity check: setup, not queries.
SETUP = {"db.py", "migrate.py", "backup.py"}
QUERY_BUILDERS = {"select", "update", "delete", "insert", "text"}
QUERY_RUNNERS = {"exec", "execute", "exec_driver_sql", "scalar", "scalars", "query"}
SQL_MODULES = ("sqlmodel", "sqlalchemy")


def _receiver_name(node: ast.expr) -> str:
    """The name a method is called on: ``session`` for ``session.get``, ``self._session``
    for ``self._session.get``, ``session.connection`` for ``session.connection().x``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_receiver_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _receiver_name(node.func)
    return ""


def _is_session(receiver: str) -> bool:
    """Whether a receiver names a database session: ``session``, ``self._session``,
    ``db_session``, ``s``, ``db`` (not ``self._sessions``: the broker's MQTT sessions)."""
    last = receiver.rsplit(".", 1)[-1].lstrip("_").lower()
    return last in {"s", "db"} or last.endswith("session")


def _sql_aliases(tree: ast.Module) -> set[str]:
    """The names a module binds to sqlalchemy or sqlmodel (``import sqlalchemy as sa``)."""
    return {alias.asname or alias.name.split(".")[0]
            for node in ast.walk(tree) if isinstance(node, ast.Import)
            for alias in node.names if alias.name.split(".")[0] in SQL_MODULES}


def queries_in(source: str, name: str) -> list[str]:
    """Each query built or run in ``source``, as ``name:line: what``."""
    tree = ast.parse(source)
    aliases = _sql_aliases(tree)
    # sa.text() as a keyword's value is a schema option (an index's WHERE), not a query.
    options = {id(kw.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
               for kw in node.keywords}
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module \
                and node.module.split(".")[0] in SQL_MODULES:
            for alias in node.names:
                if alias.name in QUERY_BUILDERS:
                    found.append(f"{name}:{node.lineno}: imports {alias.name} from "
                                 f"{node.module}")
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        method, receiver = node.func.attr, _receiver_name(node.func.value)
        if method in QUERY_RUNNERS:
            found.append(f"{name}:{node.lineno}: calls {receiver}.{method}()")
        elif method == "get" and _is_session(receiver):
            found.append(f"{name}:{node.lineno}: calls {receiver}.get()")
        elif method in QUERY_BUILDERS and receiver in aliases \
                and not (method == "text" and id(node) in options):
            found.append(f"{name}:{node.lineno}: builds {receiver}.{method}()")
    return found


def test_no_query_outside_the_store() -> None:
    """Services, routes, the bridge and the CLI call hub.store; none builds a query."""
    found: list[str] = []
    for path in sorted(HUB.rglob("*.py")):
        name = path.relative_to(HUB).as_posix()
        if name.startswith(("store/", "migrations/")) or name in SETUP:
            continue
        found += queries_in(path.read_text(), f"hub/{name}")
    assert found == [], "queries outside hub/store/:\n" + "\n".join(found)


def test_the_store_imports_no_decision_service_or_api() -> None:
    """The dependency runs services -> store -> models: the store imports only hub.models,
    hub.db and itself of the hub."""
    found: list[str] = []
    for path in sorted((HUB / "store").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names]
            for module in modules:
                if module.split(".")[0] == "hub" and module not in ("hub.models", "hub.db") \
                        and not module.startswith("hub.store"):
                    found.append(f"hub/store/{path.name}:{node.lineno}: imports {module}")
    assert found == []


@pytest.mark.parametrize(("source", "what"), [
    ("from sqlmodel import select\n", "imports select from sqlmodel"),
    ("from sqlalchemy.sql import text\n", "imports text from sqlalchemy.sql"),
    ("def f(session):\n    return session.exec(q)\n", "calls session.exec()"),
    ("def f(s):\n    return s.execute(q)\n", "calls s.execute()"),
    ("def f(self):\n    return self.session.get(A, 1)\n", "calls self.session.get()"),
    ("def f(session):\n    return session.connection().execute(q)\n",
     "calls session.connection.execute()"),
    ("import sqlalchemy as sa\nq = sa.update(T)\n", "builds sa.update()"),
    ("def f(db):\n    return db.scalars(q)\n", "calls db.scalars()"),
    ("def f(conn):\n    conn.exec_driver_sql('SELECT 1')\n", "calls conn.exec_driver_sql()"),
    ("def f(s):\n    return s.get(A, 1)\n", "calls s.get()"),
    ("import sqlalchemy as sa\nq = f(sa.text('x'))\n", "builds sa.text()"),
])
def test_the_walk_finds_each_kind_of_query(source: str, what: str) -> None:
    """Each form of query the rule names is found, with its line."""
    found = queries_in(source, "x.py")
    assert len(found) == 1 and found[0].startswith("x.py:") and found[0].endswith(what), found


def test_the_walk_lets_the_unit_of_work_and_other_gets_be() -> None:
    """What a service may do with its session, and ``get`` on anything else, pass."""
    source = ("def f(session, registry, headers):\n"
              "    session.add(row); session.flush(); session.commit()\n"
              "    registry.get(session, A, 1); headers.get('x'); session.get_bind()\n"
              "    self._sessions.get(client_id)\n"
              "import sqlalchemy as sa\n"
              "index = sa.Index('i', 'c', sqlite_where=sa.text('c IS NULL'))\n")
    assert queries_in(source, "x.py") == []


def test_store_functions_take_keywords_only() -> None:
    """Every function of the store that takes a session takes all its arguments by keyword
    (``(*, session, ...)``), so a call reads as what it asks for."""
    found: list[str] = []
    for path in sorted((HUB / "store").glob("*.py")):
        if path.name == "registry.py":  # a class: its methods take the session first
            continue
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue  # a private helper is no part of the layer's interface
            names = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
            taking_session = "session" in names or \
                "session" in [a.arg for a in node.args.kwonlyargs]
            if taking_session and names:
                found.append(f"hub/store/{path.name}:{node.lineno}: "
                             f"{node.name}({', '.join(names)}, ...)")
    assert found == []


def test_only_the_api_imports_its_schemas() -> None:
    """Services return rows and plain values; the routers shape them into the API's models
    (hub/schemas.py), so a change to the API's shapes never reaches a service."""
    found: list[str] = []
    for path in sorted(HUB.rglob("*.py")):
        name = path.relative_to(HUB).as_posix()
        if name.startswith("api/") or name == "schemas.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (
                    node.module == "hub.schemas" or
                    (node.module == "hub" and any(a.name == "schemas" for a in node.names))):
                found.append(f"hub/{name}:{node.lineno}: imports {node.module}")
    assert found == [], found
