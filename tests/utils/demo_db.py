"""Fresh databases holding the demo venue, copied from one seeded per test module.

Seeding the demo (about forty rows and the staff's argon2 hashes) costs far more than
copying it: a SQLite file is copied, a PostgreSQL database is created from a template.
The template is seeded once per module and seed time, so a module's tests see the same
demo they would have seeded themselves, give or take the module's own running time.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hub.db import create_db_engine, init_db
from hub.demo import seed_demo
from hub.models import utcnow

# (module, engine kind, seed time) -> template file path or database name
_templates: dict[tuple[str, str, datetime | None], str] = {}


def _server_database(server_url: str, name: str) -> str:
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def _create_database(server_url: str, name: str, template: str | None = None) -> None:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            suffix = f' TEMPLATE "{template}"' if template else ""
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{suffix}'))
    finally:
        admin.dispose()


def demo_sqlite(request: pytest.FixtureRequest, path: Path, *, now: datetime | None = None,
                sqlite_synchronous: str = "FULL") -> Engine:
    """An engine on a new SQLite file at ``path`` holding the demo seeded at ``now``."""
    key = (request.module.__name__, "sqlite", now)
    if key not in _templates:
        folder = request.getfixturevalue("tmp_path_factory").mktemp("demo-template")
        template = folder / "hub.db"
        engine = create_db_engine(f"sqlite:///{template}")
        init_db(engine)
        seed_demo(engine, now or utcnow())
        engine.dispose()  # the last connection out checkpoints the WAL into the file
        _templates[key] = str(template)
    shutil.copyfile(_templates[key], path)
    return create_db_engine(f"sqlite:///{path}", sqlite_synchronous=sqlite_synchronous)


def demo_postgres(request: pytest.FixtureRequest, *, now: datetime | None = None) -> Engine:
    """An engine on a new PostgreSQL database of the test cluster holding the demo."""
    server_url: str = request.getfixturevalue("postgres_url")
    key = (request.module.__name__, server_url, now)
    if key not in _templates:
        name = f"tpl_{uuid.uuid4().hex[:12]}"
        _create_database(server_url, name)
        engine = create_db_engine(_server_database(server_url, name))
        init_db(engine)
        seed_demo(engine, now or utcnow())
        engine.dispose()  # a template takes no other connections while it is copied
        _templates[key] = name
    name = f"hub_{uuid.uuid4().hex[:12]}"
    _create_database(server_url, name, template=_templates[key])
    return create_db_engine(_server_database(server_url, name))


def demo_database(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Engine:
    """The demo on the named engine kind ("sqlite" or "postgres"), for parametrized fixtures."""
    if kind == "sqlite":
        return demo_sqlite(request, tmp_path / "hub.db")
    return demo_postgres(request)
