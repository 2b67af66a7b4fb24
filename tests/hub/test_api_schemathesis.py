"""Schemathesis against the real app's OpenAPI: no 5xx, every response as declared.

Every operation gets schemathesis' coverage cases (boundary and invalid values of each
parameter and body) and a few fuzzed ones. Each request goes out as admin, who reaches
every route's depths, and as one more identity fixed by the request (staff,
integrator, auditor, a guest, nobody), so all roles are exercised across the run at a
third of the cost. The app runs in-process on a seeded demo SQLite copy shared by the
module (what one request changes, the next sees, as in a running hub).
``HUB_SCHEMATHESIS_EXAMPLES`` (fuzzed examples per operation, default 3) hunts longer.
"""

from __future__ import annotations

import os
import secrets
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, note, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from hub.api.main import create_app
from hub.config import Settings
from hub.db import create_db_engine
from tests.conftest import bearer, guest_token, staff_token
from tests.utils.demo_db import demo_sqlite

EXAMPLES = int(os.environ.get("HUB_SCHEMATHESIS_EXAMPLES", "3"))
ROLES = ("admin", "staff", "integrator", "auditor")
IDENTITIES = (*ROLES, "guest", "anonymous")


@pytest.fixture(scope="module")
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[FastAPI]:
    folder = tmp_path_factory.mktemp("schemathesis")
    engine = demo_sqlite(request, folder / "hub.db", sqlite_synchronous="OFF")
    reader = create_db_engine(str(engine.url), read_only=True)
    yield create_app(engine=engine, settings=Settings(data_dir=folder, broker_url=None),
                     token_key=secrets.token_bytes(32), reader=reader)
    reader.dispose()
    engine.dispose()


@pytest.fixture(scope="module")
def tokens(app: FastAPI) -> dict[str, dict[str, str]]:
    headers = {role: bearer(staff_token(app, role)) for role in ROLES}
    headers["guest"] = bearer(guest_token(app, "guest-01"))
    headers["anonymous"] = {}
    return headers


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _openapi() -> dict[str, Any]:
    # The document alone needs no database; the requests go to the module's app.
    engine = sa.create_engine("sqlite://")
    try:
        return create_app(engine=engine, settings=Settings(broker_url=None)).openapi()
    finally:
        engine.dispose()


schema = schemathesis.openapi.from_dict(_openapi())
schema.config.phases.coverage.unexpected_methods = set()  # 405s from Starlette: not ours


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms(case: Any, client: TestClient, tokens: dict[str, dict[str, str]]
                      ) -> None:
    for identity in _identities(case):
        kwargs = case.as_transport_kwargs(base_url="http://testserver",
                                          headers=tokens[identity])
        kwargs.pop("cookies", None)  # no route reads a cookie; httpx deprecates them here
        if isinstance(kwargs.get("data"), bytes | str):  # requests' raw body: httpx' content
            kwargs["content"] = kwargs.pop("data")
        note(f"as {identity}: {kwargs['method']} {kwargs['url']}")
        response = client.request(**kwargs)
        case.validate_response(response, checks=[not_a_server_error,
                                                 response_schema_conformance])


def _identities(case: Any) -> tuple[str, str]:
    """Admin, who reaches every route's depths, and one more identity fixed by the case.

    Every identity for every case would cost six requests each; a hash of the request
    spreads the others over the cases and stays the same when hypothesis replays one.
    """
    request = repr((case.method, case.formatted_path, case.query, case.body))
    return "admin", IDENTITIES[1 + zlib.crc32(request.encode()) % (len(IDENTITIES) - 1)]
