"""hypothesis-jsonschema's ``from_schema``, made to work with this Hypothesis, and fast.

Two adaptations of the library's internals, in one place so they are easy to drop:

- hypothesis-jsonschema 0.23.1 (the latest) draws an object's members with
  ``hypothesis.internal.conjecture.utils.many(...).more()``; newer Hypothesis made
  ``many`` a context manager with no ``more``. :class:`_Many` gives it back, on top of
  the new one, only when it is missing.
- The library builds (and canonicalises) the strategy of each member of an object again
  at every draw; for the contract's schemas that is ~85% of the time. The strategy of a
  schema never changes, so it is built once per schema (and formats).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as cu
from hypothesis_jsonschema import _from_schema, from_schema

__all__ = ["schema_strategy"]


class _Many:
    """``many(...)`` with ``more()`` and ``reject()``, over the context-manager ``many``."""

    def __init__(self, data: Any, **kwargs: Any) -> None:
        self._many = cu.many(data, **kwargs)
        self._many.__enter__()
        self._elements = iter(self._many)

    def more(self) -> bool:
        if next(self._elements, False) is None:  # one more element to draw
            return True
        self._many.__exit__(None, None, None)
        return False

    def reject(self, why: str | None = None) -> None:
        self._many.reject(why)


_Build = Callable[..., st.SearchStrategy[Any]]
_BUILT: dict[tuple[str, int, int], st.SearchStrategy[Any]] = {}


def _install() -> None:
    module = vars(_from_schema)
    if not hasattr(cu.many, "more"):
        module["cu"] = SimpleNamespace(many=_Many)
    build: _Build = module["__from_schema"]
    if getattr(build, "_cached", False):
        return

    def cached(schema: Any, *, alphabet: Any, custom_formats: Any) -> st.SearchStrategy[Any]:
        # The library's own recursion goes through the module's global name: this.
        key = (json.dumps(schema, sort_keys=True, default=repr), id(alphabet),
               id(custom_formats))
        if key not in _BUILT:
            _BUILT[key] = build(schema, alphabet=alphabet, custom_formats=custom_formats)
        return _BUILT[key]

    cached._cached = True  # type: ignore[attr-defined]
    module["__from_schema"] = cached


def schema_strategy(schema: Mapping[str, Any],
                    formats: Mapping[str, st.SearchStrategy[str]] | None = None
                    ) -> st.SearchStrategy[Any]:
    """Instances of ``schema`` (hypothesis_jsonschema.from_schema), NUL characters allowed."""
    _install()
    return from_schema(dict(schema), custom_formats=dict(formats or {}))
