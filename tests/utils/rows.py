"""Reading rows in tests: a row a test relies on is there, or the test says which is not."""

from __future__ import annotations

from typing import TypeVar

from sqlmodel import Session, SQLModel

Row = TypeVar("Row", bound=SQLModel)


def row(session: Session, model: type[Row], key: object) -> Row:
    """``session.get(model, key)``, failing the test when there is no such row."""
    found = session.get(model, key)
    assert found is not None, f"no {model.__name__} {key!r}"
    return found
