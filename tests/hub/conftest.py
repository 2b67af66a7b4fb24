"""The real HTTP app on a copy of a module's ``template`` database, for API tests.

A test module provides a ``template`` fixture (the path of a seeded SQLite file);
each test gets its own copy, an app with a fresh token key, and a client.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from hub.api.main import create_app
from hub.config import Settings
from hub.db import create_db_engine
from tests.conftest import bearer, guest_token, staff_token


@pytest.fixture
def engine(tmp_path: Path, template: Path) -> Iterator[Engine]:
    path = tmp_path / "hub.db"
    shutil.copyfile(template, path)
    engine = create_db_engine(f"sqlite:///{path}", sqlite_synchronous="OFF")
    yield engine
    engine.dispose()


@pytest.fixture
def reader(engine: Engine) -> Iterator[Engine]:
    """The read-only engine GETs go through, as in the running hub."""
    read_only = create_db_engine(str(engine.url), read_only=True)
    yield read_only
    read_only.dispose()


@pytest.fixture
def app(engine: Engine, reader: Engine, tmp_path: Path) -> FastAPI:
    return create_app(engine=engine, settings=Settings(data_dir=tmp_path, broker_url=None),
                      token_key=secrets.token_bytes(32), reader=reader)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def who(app: FastAPI, name: str) -> dict[str, str]:
    """Bearer headers for a guest id ("guest-01") or a staff role ("staff")."""
    if name.startswith("guest-"):
        return bearer(guest_token(app, name))
    return bearer(staff_token(app, name))
