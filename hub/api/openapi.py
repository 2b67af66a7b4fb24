"""The OpenAPI document, telling the truth about the hub's own 422 answers.

FastAPI declares every 422 as its ``HTTPValidationError`` (``detail`` a list of
field errors). The hub also answers 422 itself when a request is well formed but
refers to what is not there or breaks a rule (``Invalid``, ``RuleError``): then
``detail`` is one sentence. Clients and schema checkers must see both shapes.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

VALIDATION_ERROR = "#/components/schemas/HTTPValidationError"


class Problem(BaseModel):
    """A request the hub refused for what it says, not how it is shaped."""

    detail: str = Field(description="What is wrong, in one sentence")
    problems: list[str] | None = Field(
        None, description="Every reason, when there are several (an automation rule)")


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, built once, with both 422 shapes declared."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = FastAPI.openapi(app)  # FastAPI's own document, kept as app.openapi_schema
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for operation in _operations(doc):
        declared = operation.get("responses", {}).get("422", {})
        body = declared.get("content", {}).get("application/json")
        if body is not None:
            body["schema"] = {"anyOf": [{"$ref": VALIDATION_ERROR},
                                        {"$ref": "#/components/schemas/Problem"}]}
    return doc


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in doc.get("paths", {}).values() for op in path.values()
            if isinstance(op, dict)]
