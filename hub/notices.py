"""Staff alerts and guests' notices from an automation's parameters, as contract models.

An ``alert_staff``, ``notify_guest`` or ``offer`` action's parameters are rendered
templates (strings, numbers, lists, None) that staff wrote. The parameters the
contract names go to the model's fields, the rest to ``details``. A value that does
not fit its field never stops the runner: it is coerced when that is unambiguous (a
number for an id, ``"URGENT!"`` for ``urgent``, text cut to its maximum length) and
otherwise kept in ``details`` under its own name, the field taking its default.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

from devices.contract import GuestNotice, Severity, StaffAlert

TEXT_MAX: Final = 500
_SEVERITIES: Final[dict[str, Severity]] = {s: s for s in get_args(Severity)}
# The optional string fields of each model, with their maximum length.
_ALERT_STRINGS: Final = {"cue": 64, "guest_id": 64, "device_id": 64, "zone_id": 64,
                         "reason": 200}
_NOTICE_STRINGS: Final = {"offer_id": 64, "merchant_id": 64}
_ELLIPSIS = "\u2026"


def staff_alert(rule: str, at: datetime, params: Mapping[str, Any], *,
                alert_id: str | None = None) -> StaffAlert:
    """The alert an ``alert_staff`` action with these (rendered) parameters raises."""
    details = _json_values(params)
    text = _text(details, fallback=f"Alert from the automation {rule}")
    severity = _severity(details)
    strings = _strings(details, _ALERT_STRINGS)
    return StaffAlert(alert_id=alert_id or uuid.uuid4().hex, rule=rule, at=_aware(at),
                      severity=severity, text=text, cue=strings.get("cue"),
                      guest_id=strings.get("guest_id"), device_id=strings.get("device_id"),
                      zone_id=strings.get("zone_id"), reason=strings.get("reason"),
                      details=details)


def guest_notice(kind: Literal["offer", "notice"], rule: str, at: datetime,
                 params: Mapping[str, Any], *, notice_id: str | None = None) -> GuestNotice:
    """The notice a ``notify_guest`` (kind ``notice``) or ``offer`` action sends a guest."""
    details = _json_values(params)
    fallback = "An offer for you" if kind == "offer" else "A message from the venue"
    text = _text(details, fallback=fallback)
    strings = _strings(details, _NOTICE_STRINGS)
    return GuestNotice(kind=kind, notice_id=notice_id or uuid.uuid4().hex, rule=rule,
                       at=_aware(at), text=text, offer_id=strings.get("offer_id"),
                       merchant_id=strings.get("merchant_id"), details=details)


# ------------------------------------------------------------------ coercion


def _json_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters as JSON holds them: string keys, anything else made a string."""
    plain: dict[str, Any] = json.loads(json.dumps({str(k): v for k, v in params.items()},
                                                  default=str))
    return plain


def _text(details: dict[str, Any], *, fallback: str) -> str:
    """``text`` taken out of ``details``: a number becomes its digits, a long text is cut;
    anything else (a list, a boolean) stays in ``details`` and the fallback is used."""
    value = details.pop("text", None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return fallback
        return value if len(value) <= TEXT_MAX else value[:TEXT_MAX - 1] + _ELLIPSIS
    if value is not None:
        details["text"] = value
    return fallback


def _severity(details: dict[str, Any]) -> Severity:
    """``severity`` taken out of ``details`` when it names one, in any case and punctuation."""
    value = details.pop("severity", None)
    if isinstance(value, str):
        severity = _SEVERITIES.get(re.sub(r"[^a-z]", "", value.lower()))
        if severity is not None:
            return severity
    if value is not None and value != "":
        details["severity"] = value  # not one we know: staff still see what the rule said
    return "warning"


def _strings(details: dict[str, Any], fields: Mapping[str, int]) -> dict[str, str]:
    """The optional string fields taken out of ``details``: a number becomes a string,
    empty means absent; a value too long or of another type stays in ``details``."""
    found: dict[str, str] = {}
    for name, longest in fields.items():
        if name not in details:
            continue
        value = details[name]
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if value is None or value == "":
            del details[name]
        elif isinstance(value, str) and len(value) <= longest:
            found[name] = value
            del details[name]
    return found


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
