"""What is wrong with a rule, in words staff can act on: pydantic's errors, each naming
the field (``unknown counter 'hugs'``, ``action 2: params must be a mapping``)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from devices.topics import ID_PATTERN

# The error type of what a validator of ours found: its words are said as they are.
RULE_PROBLEM = "rule_problem"


def refuse(*problems: str) -> PydanticCustomError:
    """An error for a validator to raise that carries our own words, one or several."""
    return PydanticCustomError(RULE_PROBLEM, "{problems}",
                               {"problems": "; ".join(problems), "each": list(problems)})


def explain(exc: ValidationError) -> list[str]:
    """Every problem of a rule, once each, in the order pydantic found them."""
    said: list[str] = []
    for error in exc.errors(include_url=False):
        said += _words(error)
    return list(dict.fromkeys(said))


def _words(error: ErrorDetails) -> list[str]:
    loc, kind, given = error["loc"], error["type"], error["input"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if kind == RULE_PROBLEM:
        return list(ctx["each"])
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return [f"{_place(loc[:-1])}unknown field {loc[-1]!r}"]
    if not loc:
        return [f"must be a mapping, not {type(given).__name__}"]
    head = loc[0]
    if head == "conditions":
        return [_condition(loc, kind, given, ctx)]
    if head == "actions":
        return [_action(loc, kind, given)]
    if head == "id" and kind == "string_pattern_mismatch":
        return [f"id must match {ID_PATTERN}"]
    if head == "name" and kind == "string_too_long":
        return ["name is longer than 200 characters"]
    if head in ("purpose", "trigger") and kind == "literal_error" and _word(given):
        return [f"unknown {head} {given!r}"]
    if head in ("id", "name", "purpose", "trigger"):
        return [f"{head} must be a non-empty string"]
    if head == "filters":
        return ["filters must be a mapping of field to value"]
    if head == "enabled":
        return ["enabled must be true or false"]
    return [f"{'.'.join(map(str, loc))}: {error['msg']}"]  # still names the field


def _condition(loc: tuple[int | str, ...], kind: str, given: Any, ctx: dict[str, Any]) -> str:
    if len(loc) == 2 and kind == "union_tag_invalid":
        return f"unknown condition {ctx.get('tag')!r}"
    if len(loc) == 2 and kind == "union_tag_not_found":
        return f"condition {int(loc[1]) + 1} needs a kind"
    if len(loc) < 4:
        return "conditions must be a list of mappings"
    condition, argument = loc[2], loc[3]
    if argument in ("start", "end"):
        return f"time_between needs {argument} as HH:MM (local time)"
    if argument == "of":
        return "time_between's of is now (default) or event"
    if argument == "counter":
        return f"{condition} needs a counter" if kind == "missing" else \
            f"unknown counter {given!r}"
    if argument == "value":
        return f"{condition} needs an integer value"
    if argument == "field":
        return "reading_above needs a field" if kind == "missing" else \
            f"unknown reading {given!r}"
    if argument == "limit":
        return "reading_above needs a limit (a number or a template)"
    return f"{condition} needs a {argument}"


def _action(loc: tuple[int | str, ...], kind: str, given: Any) -> str:
    if len(loc) == 1:
        return "actions must be a list"
    n = int(loc[1]) + 1
    if len(loc) == 2:
        return f"action {n} must be a mapping"
    argument = loc[2]
    if argument == "kind":
        return f"unknown action {given!r}" if kind == "literal_error" and _word(given) else \
            f"action {n}: kind must be a string"
    if argument == "params":
        return f"action {n}: params must be a mapping"
    return f"action {n}: {argument} must be a string"


def _place(loc: tuple[int | str, ...]) -> str:
    """Where an unknown field was: the rule itself, a condition or an action."""
    if len(loc) >= 2 and loc[0] in ("conditions", "actions"):
        return f"{str(loc[0])[:-1]} {int(loc[1]) + 1}: "
    return ""


def _word(given: Any) -> bool:
    return isinstance(given, str) and given != ""
