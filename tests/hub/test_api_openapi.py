"""The OpenAPI document declares what the API answers: both shapes of a 422."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.db import create_db_engine, init_db
from hub.demo import seed_demo
from hub.models import utcnow
from tests.hub.conftest import who


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openapi") / "hub.db"
    engine = create_db_engine(f"sqlite:///{path}", sqlite_synchronous="OFF")
    init_db(engine)
    seed_demo(engine, utcnow())
    engine.dispose()
    return path


def _declared_422(doc: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    declared = doc["paths"][path][method]["responses"]["422"]
    schema: dict[str, Any] = declared["content"]["application/json"]["schema"]
    return {**schema, "components": doc["components"]}


@pytest.mark.parametrize(("method", "path", "query", "shape"), [
    # The hub's own refusal: a cursor it never gave out (detail is a sentence).
    ("get", "/api/v1/dead-letters", {"cursor": "null"}, str),
    # FastAPI's: a parameter of the wrong type (detail is a list of field errors).
    ("get", "/api/v1/dead-letters", {"limit": "many"}, list),
])
def test_every_422_matches_the_document(app: FastAPI, client: TestClient, method: str,
                                        path: str, query: dict[str, str],
                                        shape: type) -> None:
    response = client.request(method, path, params=query, headers=who(app, "admin"))
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], shape)
    schema = _declared_422(client.get("/openapi.json").json(), path, method)
    jsonschema.validate(response.json(), schema)
