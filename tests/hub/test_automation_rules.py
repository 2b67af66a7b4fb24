"""Rules as pydantic models: their shape always, what they mean when saved. No fixtures."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import ValidationError

from hub.automations.catalogue import shipped
from hub.automations.rules import Condition, Rule, RuleError, parse_rule, rule_to_dict, validate
from hub.automations.vocabulary import CONDITIONS

BASE: dict[str, Any] = {"id": "a", "name": "A", "purpose": "service", "trigger": "entry_denied",
                        "actions": [{"kind": "alert_staff", "params": {"text": "hi"}}]}


@pytest.mark.parametrize("rule", shipped(), ids=lambda rule: rule.id)
def test_a_shipped_rule_is_the_same_after_plain_data_and_passes_the_saving_checks(
        rule: Rule) -> None:
    assert parse_rule(rule_to_dict(rule)) == rule
    validate(rule, known_devices=[])


def test_the_condition_union_has_every_condition_word() -> None:
    union = typing.get_args(typing.get_args(Condition)[0])
    assert {kind.__dataclass_fields__["kind"].default for kind in union} == CONDITIONS


def test_a_rule_made_in_code_has_its_shape_checked_too() -> None:
    with pytest.raises(ValidationError):
        Rule(id="x", name="x", purpose="service", trigger="entry_denied",
             conditions=({"kind": "full_moon"},))  # type: ignore[arg-type]


def test_a_stored_rule_reads_even_if_saving_it_today_is_refused() -> None:
    """A rule stored before a check got stricter still loads; the engine skips what it
    cannot evaluate (see test_robustness)."""
    data = {**BASE, "purpose": "health",
            "actions": [{"kind": "notify_guest", "params": {"text": "{weather.sky}"}}]}
    assert parse_rule(data).actions[0].params == {"text": "{weather.sky}"}
    with pytest.raises(RuleError) as caught:
        parse_rule(data, known_devices=[])
    assert caught.value.problems == ["unknown template variable {weather.sky}"]


@pytest.mark.parametrize(("change", "problem"), [
    ({"id": "bad id"}, "id must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}"),
    ({"name": "x" * 201}, "name is longer than 200 characters"),
    ({"purpose": 5}, "purpose must be a non-empty string"),
    ({"trigger": "rain"}, "unknown trigger 'rain'"),
    ({"enabled": "yes"}, "enabled must be true or false"),
    ({"filters": [1]}, "filters must be a mapping of field to value"),
    ({"filters": {"weather.sky": "blue"}}, "unknown filter field 'weather.sky'"),
    ({"conditions": [{}]}, "condition 1 needs a kind"),
    ({"conditions": [{"kind": "full_moon"}]}, "unknown condition 'full_moon'"),
    ({"conditions": [{"kind": "counter_is", "value": 1}]}, "counter_is needs a counter"),
    ({"conditions": [{"kind": "counter_is", "counter": "hugs", "value": 1}]},
     "unknown counter 'hugs'"),
    ({"conditions": [{"kind": "counter_at_least", "counter": "rides", "value": True}]},
     "counter_at_least needs an integer value"),
    ({"conditions": [{"kind": "first_entry_of_stay", "colour": "red"}]},
     "condition 1: unknown field 'colour'"),
    ({"actions": ["x"]}, "action 1 must be a mapping"),
    ({"actions": [{"kind": "dance"}]}, "unknown action 'dance'"),
    ({"actions": [{"kind": "alert_staff", "params": []}]}, "action 1: params must be a mapping"),
    ({"actions": [{"kind": "alert_staff", "params": {"x": float("nan")}}]},
     ("params may hold only strings (valid Unicode), numbers, true/false, null, lists and "
      "mappings")),
    ({"actions": [{"kind": "command", "target": "room:light"}]}, "a command action needs a name"),
    ({"actions": []}, "a rule needs at least one action"),
    ({"trigger": "schedule", "filters": {"event.schedule": "7:30"}},
     "a schedule rule needs the filter event.schedule: 'HH:MM' (venue time, quoted)"),
])
def test_each_problem_names_its_field(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule({**BASE, **change}, known_devices=[])
    assert caught.value.problems == [problem]
