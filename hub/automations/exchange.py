"""Rules as plain data (JSON) and as YAML, the exchange format: a mapping ``rules:``
holding a list of rules, each as :func:`rule_to_dict` writes it."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import time as clock_time
from typing import Any

import yaml  # type: ignore[import-untyped]

from devices.topics import ID_PATTERN
from hub.automations.rules import Action, Rule, RuleError

RULE_KEYS = ("id", "name", "purpose", "trigger", "filters", "conditions", "actions", "enabled")
ACTION_KEYS = ("kind", "target", "name", "params")
_ID = re.compile(rf"^{ID_PATTERN}$")
MAX_YAML_NODES = 100_000  # an import bigger than this (or an alias bomb) is refused


# -------------------------------------------------------------- plain data


def action_to_dict(action: Action) -> dict[str, Any]:
    return {"kind": action.kind, "target": action.target, "name": action.name,
            "params": dict(action.params)}


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """A rule as plain data (JSON and YAML), its keys in :data:`RULE_KEYS` order."""
    return {"id": rule.id, "name": rule.name, "purpose": rule.purpose, "trigger": rule.trigger,
            "filters": dict(rule.filters), "conditions": [dict(c) for c in rule.conditions],
            "actions": [action_to_dict(a) for a in rule.actions], "enabled": rule.enabled}


def _where(rule_id: Any, index: int | None) -> str:
    if isinstance(rule_id, str) and rule_id:
        return f"rule {rule_id!r}"
    return f"rule #{index + 1}" if index is not None else "rule"


def rule_from_dict(data: Any, *, index: int | None = None) -> Rule:
    """A rule from plain data; RuleError names every problem of its shape.

    What the rule means (known triggers, devices, template variables) is
    :func:`hub.automations.validate`'s to check.
    """
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise RuleError([f"{_where(None, index)}: must be a mapping, not {kind}"])
    where = _where(data.get("id"), index)
    problems: list[str] = []
    for key in data:
        if key not in RULE_KEYS:
            problems.append(f"{where}: unknown field {key!r}")
    for key in ("id", "name", "purpose", "trigger"):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            problems.append(f"{where}: {key} must be a non-empty string")
    if isinstance(data.get("id"), str) and data["id"] and not _ID.match(data["id"]):
        problems.append(f"{where}: id must match {ID_PATTERN}")
    if isinstance(data.get("name"), str) and len(data["name"]) > 200:
        problems.append(f"{where}: name is longer than 200 characters")
    filters = data.get("filters") or {}
    if not isinstance(filters, Mapping) or not all(isinstance(k, str) for k in filters):
        problems.append(f"{where}: filters must be a mapping of field to value")
        filters = {}
    conditions = data.get("conditions") or []
    if not isinstance(conditions, list) or not all(isinstance(c, Mapping) for c in conditions):
        problems.append(f"{where}: conditions must be a list of mappings")
        conditions = []
    for n, condition in enumerate(conditions, 1):
        if not isinstance(condition.get("kind"), str):
            problems.append(f"{where}: condition {n} needs a kind")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(f"{where}: enabled must be true or false")
    actions: list[Action] = []
    raw_actions = data.get("actions")
    if not isinstance(raw_actions, list):
        problems.append(f"{where}: actions must be a list")
        raw_actions = []
    for n, raw in enumerate(raw_actions, 1):
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: action {n} must be a mapping")
            continue
        for key in raw:
            if key not in ACTION_KEYS:
                problems.append(f"{where}: action {n}: unknown field {key!r}")
        if not isinstance(raw.get("kind"), str):
            problems.append(f"{where}: action {n}: kind must be a string")
        for key in ("target", "name"):
            if raw.get(key) is not None and not isinstance(raw.get(key), str):
                problems.append(f"{where}: action {n}: {key} must be a string")
        params = raw.get("params") or {}
        if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
            problems.append(f"{where}: action {n}: params must be a mapping")
            params = {}
        actions.append(Action(raw.get("kind"), raw.get("target"), raw.get("name"),  # type: ignore[arg-type]
                              dict(params)))
    for label, value in (("filters", filters), ("conditions", conditions),
                         ("params", [a.params for a in actions])):
        if not _plain(value):
            problems.append(f"{where}: {label} may hold only strings (valid Unicode), "
                            "numbers, true/false, null, lists and mappings")
    if problems:
        raise RuleError(problems)
    return Rule(id=data["id"], name=data["name"], purpose=data["purpose"],
                trigger=data["trigger"], filters=dict(filters),
                conditions=tuple(dict(c) for c in conditions), actions=tuple(actions),
                enabled=enabled)


def _plain(value: Any, depth: int = 0) -> bool:
    """JSON's kinds of value only (YAML also makes dates, sets and bytes)."""
    if depth > 50:
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return _utf8(value)
    if value is None or isinstance(value, bool | int):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _utf8(k) and _plain(v, depth + 1)
                   for k, v in value.items())
    return False


def _utf8(text: str) -> bool:
    """Text that can go out as UTF-8 (JSON lets a lone surrogate such as \\ud800 in)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def condition_problems(rule: Rule) -> list[str]:
    """What :func:`hub.automations.validate` leaves to run time: each condition's arguments."""
    problems: list[str] = []
    for condition in rule.conditions:
        kind = condition.get("kind")
        if kind == "time_between":
            for key in ("start", "end"):
                try:
                    at = clock_time.fromisoformat(str(condition.get(key)))
                except ValueError:
                    at = None
                if at is None or at.tzinfo is not None:
                    problems.append(f"time_between needs {key} as HH:MM (local time)")
            if condition.get("of", "now") not in ("now", "event"):
                problems.append("time_between's of is now (default) or event")
        elif kind in ("counter_at_least", "counter_is"):
            value = condition.get("value")
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{kind} needs an integer value")
        elif kind == "preference_set":
            if not isinstance(condition.get("preference"), str):
                problems.append("preference_set needs a preference")
        elif kind == "reading_above":
            limit = condition.get("limit")
            if isinstance(limit, bool) or not isinstance(limit, int | float | str):
                problems.append("reading_above needs a limit (a number or a template)")
    return problems


# ---------------------------------------------------------------------- YAML


def export_yaml(rules: Iterable[Rule]) -> str:
    """The rules as a YAML document ``rules: [...]`` that :func:`import_yaml` reads back."""
    documents = []
    for rule in rules:
        data = rule_to_dict(rule)
        data["actions"] = [{k: v for k, v in a.items() if v is not None}
                           for a in data["actions"]]  # no "target: null"
        documents.append(data)
    text: str = yaml.safe_dump({"rules": documents}, sort_keys=False, allow_unicode=True,
                               default_flow_style=False)
    return text


def _too_big(value: Any, budget: list[int]) -> bool:
    budget[0] -= 1
    if budget[0] < 0:
        return True
    if isinstance(value, Mapping):
        return any(_too_big(k, budget) or _too_big(v, budget) for k, v in value.items())
    if isinstance(value, list):
        return any(_too_big(v, budget) for v in value)
    return False


def import_yaml(text: str) -> list[Rule]:
    """The rules of a YAML document (``rules: [...]``, or the list alone).

    RuleError names every problem: YAML that does not parse, a document of another
    shape, a rule's missing or unknown fields, an id given twice.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RuleError([f"not valid YAML{where}: {exc.problem or exc}"]) from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise RuleError([f"not valid YAML: {exc}"]) from None
    if isinstance(document, Mapping) and set(document) == {"rules"}:
        document = document["rules"]
    if not isinstance(document, list):
        raise RuleError(["expected a mapping with one key, rules, holding a list of rules"])
    try:
        if _too_big(document, [MAX_YAML_NODES]):
            raise RuleError([f"the document is too big (over {MAX_YAML_NODES} values)"])
    except RecursionError:
        raise RuleError(["the document is nested too deeply"]) from None
    rules: list[Rule] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, data in enumerate(document):
        try:
            rule = rule_from_dict(data, index=index)
        except RuleError as exc:
            problems += exc.problems
            continue
        if rule.id in seen:
            problems.append(f"rule {rule.id!r}: given twice")
        seen.add(rule.id)
        rules.append(rule)
    if problems:
        raise RuleError(problems)
    return rules
