"""The evaluator: which rules match what happened, and the actions they ask for.

Pure: no I/O, the clock passed in (in the facts). No rule whose purpose needs consent
fires without that consent: :func:`plan` checks the purpose before anything else, so
withdrawing consent takes effect on the next event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, time
from typing import Any

from hub.automations.facts import Facts
from hub.automations.rules import (
    Condition,
    CounterAtLeast,
    CounterIs,
    FirstEntryOfStay,
    PreferenceSet,
    ReadingAbove,
    Rule,
    TimeBetween,
)
from hub.automations.templates import render
from hub.automations.vocabulary import SELF, ActionKind


@dataclass(frozen=True)
class Planned:
    """An action resolved against the facts: ready for the runner to carry out."""

    rule_id: str
    kind: ActionKind
    device_id: str | None
    name: str | None
    params: Mapping[str, Any]
    # The consents it was planned under: a command that waits for an offline appliance
    # goes out later only if they still hold.
    purposes: frozenset[str] = frozenset()


def _matches(rule: Rule, facts: Facts) -> bool:
    if not rule.enabled or rule.trigger != facts.trigger:
        return False
    for key, wanted in rule.filters.items():
        head, _, tail = key.partition(".")
        source = getattr(facts, head, None)
        if not isinstance(source, Mapping):
            return False
        value = source.get(tail)
        # A list is any of its values ("zone.kind: [area, room]").
        if value not in wanted if isinstance(wanted, list) else value != wanted:
            return False
    return True


def _holds(condition: Condition, facts: Facts) -> bool:
    """Whether a condition holds; one whose arguments make no sense (a limit that is not a
    number once rendered, say) does not."""
    try:
        return _check(condition, facts)
    except (KeyError, TypeError, ValueError, OverflowError):
        return False


def _check(condition: Condition, facts: Facts) -> bool:
    match condition:
        case FirstEntryOfStay():
            if "first_entry" in facts.counters:
                return facts.counters["first_entry"] == 1
            return facts.counters.get("entries", 0) == 1
        case TimeBetween():
            at = facts.event.get("at") if condition.of == "event" else facts.now
            if not isinstance(at, datetime):
                return False
            local = at.astimezone(facts.now.tzinfo).time() if at.tzinfo else at.time()
            start, end = time.fromisoformat(condition.start), time.fromisoformat(condition.end)
            if start <= end:
                return start <= local < end
            return local >= start or local < end  # a window across midnight
        case CounterAtLeast():
            return facts.counters.get(condition.counter, 0) >= condition.value
        case CounterIs():
            return facts.counters.get(condition.counter, 0) == condition.value
        case PreferenceSet():
            return facts.prefs.get(condition.preference) not in (None, "", [])
        case ReadingAbove():
            value = facts.reading.get(condition.field)
            limit = render(condition.limit, facts)
            if isinstance(value, bool) or not isinstance(value, int | float) or limit is None:
                return False
            return float(value) > float(limit)
    return False


def plan(rules: Iterable[Rule], facts: Facts, *,
         on_error: Callable[[Rule, Exception], None] | None = None) -> list[Planned]:
    """The actions every matching rule asks for, in rule order; consent is checked first.

    A rule that cannot be evaluated (a stored rule with a bad argument, say) is skipped
    and handed to ``on_error``: it never stops the other rules.
    """
    planned: list[Planned] = []
    for rule in rules:
        try:
            planned += _plan_one(rule, facts)
        except Exception as exc:  # one bad rule must not silence the others (health alerts)
            if on_error is not None:
                on_error(rule, exc)
    return planned


def _plan_one(rule: Rule, facts: Facts) -> list[Planned]:
    needed = frozenset(({rule.purpose} | facts.data_purposes) - {"service"})
    if not needed <= facts.consents or not _matches(rule, facts):
        return []
    if rule.purpose == "service":
        # A service rule runs without consent, so it sees none of the guest's preferences.
        facts = replace(facts, prefs={})
    if not all(_holds(c, facts) for c in rule.conditions):
        return []
    planned = []
    for action in rule.actions:
        target = action.target
        if target == SELF:
            device = facts.device.get("id")
        elif target and target.startswith("room:"):
            device = facts.room_devices.get(target.split(":", 1)[1])
        else:
            device = target
        if target and device is None:
            continue  # the room has no such device: nothing to command
        params = {k: render(v, facts) for k, v in action.params.items()}
        if action.kind in ("command", "greet") and any(v is None for v in params.values()):
            continue  # e.g. no preferred temperature: nothing to set, rather than null
        planned.append(Planned(rule.id, action.kind, device, action.name, params, needed))
    return planned

