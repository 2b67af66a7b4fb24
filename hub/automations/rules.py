"""A rule as staff define it: pydantic models, the conditions a union on their ``kind``.

A rule has a trigger (what happened, with filters; or a daily time, ``schedule``),
conditions (about the guest, their consent, the time, counters) and actions (a command
to a device of the room or a named device, a greeting, a notification to the guest, an
alert to staff, an offer), whose parameters are templates over the facts:
``{guest.name}``, ``{prefs.room_temperature_c}``.

Its shape is checked whenever a rule is made (in code, read from the database,
imported): the kinds, each condition's arguments, plain JSON values. What it means
(template variables, devices, filter fields, consent) is checked when it is saved:
:func:`parse_rule` or :func:`validate` with the known devices. A rule stored before a
check got stricter still loads; the engine skips what it cannot evaluate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, field
from datetime import time
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from devices.topics import ID_PATTERN
from hub.automations.problems import explain, refuse
from hub.automations.templates import fields_of
from hub.automations.vocabulary import (
    FILTER_HEADS,
    HEALTH_COUNTERS,
    NUMERIC_FIELDS,
    PERSONAL_HEADS,
    SELF,
    TEMPLATE_FIELDS,
    ActionKind,
    CounterName,
    Purpose,
    ReadingName,
    TriggerKind,
)

_FORM = ConfigDict(extra="forbid")
_SCHEDULE = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


class RuleError(ValueError):
    """A rule that cannot be saved, with every reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


# ------------------------------------------------------------------- values


def _known_devices(info: ValidationInfo) -> frozenset[str] | None:
    """The devices a rule being saved may name; None when a rule is only made or read."""
    context = info.context
    return context.get("known_devices") if isinstance(context, dict) else None


def _utf8(text: str) -> str:
    if not _encodable(text):
        raise refuse("text must be valid Unicode (no lone surrogates) without NUL")
    return text


def _plain(value: Any, depth: int = 0) -> bool:
    """JSON's kinds of value only (YAML also makes dates, sets and bytes)."""
    if depth > 50:
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return _encodable(value)
    if value is None or isinstance(value, bool | int):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _encodable(k) and _plain(v, depth + 1)
                   for k, v in value.items())
    return False


def _encodable(text: str) -> bool:
    # JSON lets a lone surrogate ("\\ud800") in; it cannot be stored or answered as UTF-8.
    # Nor can PostgreSQL store a NUL in text (SQLite would, and answer it back).
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain_values(label: str) -> AfterValidator:
    def check(values: dict[str, Any]) -> dict[str, Any]:
        if not _plain(values):
            raise refuse(f"{label} may hold only strings (valid Unicode), numbers, "
                         "true/false, null, lists and mappings")
        return values
    return AfterValidator(check)


def _local_time(value: str) -> str:
    try:
        at = time.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("local_time", "HH:MM (local time)") from None
    if at.tzinfo is not None:
        raise PydanticCustomError("local_time", "HH:MM (local time)")
    return value


def _filter_field(key: str, info: ValidationInfo) -> str:
    if _known_devices(info) is not None and key.partition(".")[0] not in FILTER_HEADS:
        raise refuse(f"unknown filter field {key!r}")
    return key


def unknown_templates(values: Iterable[Any]) -> list[str]:
    """Every template variable the strings among ``values`` name that is no fact."""
    return [f"unknown template variable {{{name}}}" for value in values
            if isinstance(value, str) for name in fields_of(value)
            if name not in TEMPLATE_FIELDS]


Text = Annotated[StrictStr, AfterValidator(_utf8)]
RuleId = Annotated[StrictStr, Field(pattern=f"^{ID_PATTERN}$")]
Name = Annotated[StrictStr, Field(min_length=1, max_length=200), AfterValidator(_utf8)]
LocalTime = Annotated[StrictStr, AfterValidator(_local_time)]
FilterField = Annotated[StrictStr, AfterValidator(_filter_field)]
Filters = Annotated[dict[FilterField, Any], _plain_values("filters")]
Params = Annotated[dict[StrictStr, Any], _plain_values("params")]


# --------------------------------------------------------------- conditions


@dataclass(frozen=True, kw_only=True, config=_FORM)
class FirstEntryOfStay:
    """The guest's first allowed entry into the zone this stay (or ticket)."""

    kind: Literal["first_entry_of_stay"] = "first_entry_of_stay"


@dataclass(frozen=True, kw_only=True, config=_FORM)
class TimeBetween:
    """Venue time in [start, end), now or (``of: event``) when the event happened; a
    window may cross midnight."""

    kind: Literal["time_between"] = "time_between"
    start: LocalTime
    end: LocalTime
    of: Literal["now", "event"] | None = None  # None is now (left out when written)


@dataclass(frozen=True, kw_only=True, config=_FORM)
class CounterAtLeast:
    """A counter of :data:`hub.automations.vocabulary.COUNTERS` is ``value`` or more."""

    kind: Literal["counter_at_least"] = "counter_at_least"
    counter: CounterName
    value: StrictInt


@dataclass(frozen=True, kw_only=True, config=_FORM)
class CounterIs:
    """A counter is exactly ``value``: fires once, at the event that makes it so."""

    kind: Literal["counter_is"] = "counter_is"
    counter: CounterName
    value: StrictInt


@dataclass(frozen=True, kw_only=True, config=_FORM)
class PreferenceSet:
    """The guest has set a preference (consent needed)."""

    kind: Literal["preference_set"] = "preference_set"
    preference: Text


@dataclass(frozen=True, kw_only=True, config=_FORM)
class ReadingAbove:
    """A reading is above ``limit``: a number, or one template of a number."""

    kind: Literal["reading_above"] = "reading_above"
    field: ReadingName
    limit: StrictInt | StrictFloat | Text

    @field_validator("limit")
    @classmethod
    def _meaningful(cls, limit: float | str, info: ValidationInfo) -> float | str:
        if _known_devices(info) is None:
            return limit
        problems = unknown_templates([limit])
        if not problems and not _numeric(limit):  # an unknown variable is said once
            problems.append("reading_above needs a limit: a number or one template of a "
                            f"number ({', '.join(sorted(NUMERIC_FIELDS))})")
        if problems:
            raise refuse(*problems)
        return limit


Condition = Annotated[FirstEntryOfStay | TimeBetween | CounterAtLeast | CounterIs
                      | PreferenceSet | ReadingAbove, Field(discriminator="kind")]


def _numeric(limit: float | str) -> bool:
    if not isinstance(limit, str):
        return True
    names = fields_of(limit)
    return len(names) == 1 and limit == "{" + names[0] + "}" and names[0] in NUMERIC_FIELDS


# ------------------------------------------------------------ actions, rules


@dataclass(frozen=True, config=_FORM)
class Action:
    """What to do; ``target`` is a device id, ``room:<kind>`` for the guest's room's device,
    or ``self`` for the device the event came from."""

    kind: ActionKind
    target: Text | None = None
    name: Text | None = None  # the command's name
    params: Params = field(default_factory=dict)

    @model_validator(mode="after")
    def _meaningful(self, info: ValidationInfo) -> Action:
        devices = _known_devices(info)
        if devices is None:
            return self
        problems = []
        if self.kind == "command" and not self.name:
            problems.append("a command action needs a name")
        target = self.target
        if target and target != SELF and not target.startswith("room:") \
                and target not in devices:
            problems.append(f"unknown device {target!r}")
        problems += unknown_templates(self.params.values())
        if problems:
            raise refuse(*problems)
        return self


@dataclass(frozen=True, config=_FORM)
class Rule:
    """One automation, as staff define it (stored, imported and exported as YAML)."""

    id: RuleId
    name: Name
    purpose: Purpose
    trigger: TriggerKind
    filters: Filters = field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()
    actions: tuple[Action, ...] = ()
    enabled: StrictBool = True

    @field_validator("actions")
    @classmethod
    def _some(cls, actions: tuple[Action, ...], info: ValidationInfo) -> tuple[Action, ...]:
        if _known_devices(info) is not None and not actions:
            raise refuse("a rule needs at least one action")
        return actions

    @model_validator(mode="after")
    def _meaningful(self, info: ValidationInfo) -> Rule:
        if _known_devices(info) is None:
            return self
        problems = []
        if self.trigger == "schedule":
            at = self.filters.get("event.schedule")
            if not isinstance(at, str) or not _SCHEDULE.fullmatch(at):
                problems.append("a schedule rule needs the filter event.schedule: 'HH:MM' "
                                "(venue time, quoted)")
        if self.purpose == "service":
            problems += _personal_in_service(self)
        if problems:
            raise refuse(*problems)
        return self


def _personal_in_service(rule: Rule) -> list[str]:
    """A service rule runs without consent: it may not use what needs consent."""
    problems = [f"a service rule may not use {condition.kind}: it needs the guest's "
                "consent (give the rule that purpose)" for condition in rule.conditions
                if isinstance(condition, PreferenceSet | ReadingAbove)]
    values = [*rule.filters.values(), *(c.limit for c in rule.conditions
                                        if isinstance(c, ReadingAbove)),
              *(v for a in rule.actions for v in a.params.values())]
    named = {n for v in values if isinstance(v, str) for n in fields_of(v)}
    for name in sorted(named | set(rule.filters)):
        if name.partition(".")[0] in PERSONAL_HEADS or name in HEALTH_COUNTERS:
            problems.append(f"a service rule may not use {name}: it needs the guest's "
                            "consent (give the rule that purpose)")
    return problems


# ------------------------------------------------------------- plain data

_RULE: TypeAdapter[Rule] = TypeAdapter(Rule)


def parse_rule(data: Any, *, known_devices: Iterable[str] | None = None) -> Rule:
    """A rule from plain data (JSON, YAML, a stored row); RuleError names every problem.

    With ``known_devices`` the rule is checked for saving: what it means, too.
    """
    context = None if known_devices is None else {"known_devices": frozenset(known_devices)}
    try:
        return _RULE.validate_python(data, context=context)
    except ValidationError as exc:
        raise RuleError(explain(exc)) from None


def validate(rule: Rule, *, known_devices: Iterable[str]) -> None:
    """Raise RuleError naming every unknown field, device or template of a rule to save."""
    parse_rule(rule_to_dict(rule), known_devices=known_devices)


def condition_to_dict(condition: Condition) -> dict[str, Any]:
    """A condition as plain data; an argument left to its default is left out."""
    return {k: v for k, v in asdict(condition).items() if v is not None}


def action_to_dict(action: Action) -> dict[str, Any]:
    """An action as plain data."""
    return {"kind": action.kind, "target": action.target, "name": action.name,
            "params": dict(action.params)}


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """A rule as plain data (JSON and YAML) that :func:`parse_rule` reads back."""
    return {"id": rule.id, "name": rule.name, "purpose": rule.purpose, "trigger": rule.trigger,
            "filters": dict(rule.filters),
            "conditions": [condition_to_dict(c) for c in rule.conditions],
            "actions": [action_to_dict(a) for a in rule.actions], "enabled": rule.enabled}
