"""Rules as YAML, the exchange format: a mapping ``rules:`` holding a list of rules,
each as :func:`hub.automations.rules.rule_to_dict` writes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml  # type: ignore[import-untyped]

from hub.automations.rules import Rule, RuleError, parse_rule, rule_to_dict

MAX_YAML_NODES = 100_000  # an import bigger than this (or an alias bomb) is refused


def _named(data: Any, index: int) -> str:
    """How a problem names the rule it is about: by its id, else by its place."""
    rule_id = data.get("id") if isinstance(data, Mapping) else None
    return f"rule {rule_id!r}" if isinstance(rule_id, str) and rule_id else f"rule #{index + 1}"


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


def import_yaml(text: str, *, known_devices: Iterable[str] | None = None) -> list[Rule]:
    """The rules of a YAML document (``rules: [...]``, or the list alone).

    RuleError names every problem, each with its rule: YAML that does not parse, a
    document of another shape, a rule's missing or unknown fields, an id given twice;
    with ``known_devices``, what the rules mean too (as for saving them).
    """
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RuleError([f"not valid YAML{at}: {exc.problem or exc}"]) from None
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
            rule = parse_rule(data, known_devices=known_devices)
        except RuleError as exc:
            problems += [f"{_named(data, index)}: {p}" for p in exc.problems]
            continue
        if rule.id in seen:
            problems.append(f"rule {rule.id!r}: given twice")
        seen.add(rule.id)
        rules.append(rule)
    if problems:
        raise RuleError(problems)
    return rules
