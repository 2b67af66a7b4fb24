"""What happened, with everything a rule may look at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.automations.vocabulary import TriggerKind


@dataclass(frozen=True)
class Facts:
    """What happened, with everything a rule may look at.

    ``now`` is in the venue's time zone, so time windows are local. ``data_purposes``
    names what consent the data itself needs whatever the rule (a watch's readings are
    health data). ``event["at"]`` is when the event happened as the device reported it.
    """

    trigger: TriggerKind
    now: datetime
    data_purposes: frozenset[str] = frozenset()
    guest: Mapping[str, Any] = field(default_factory=dict)
    prefs: Mapping[str, Any] = field(default_factory=dict)
    consents: frozenset[str] = frozenset()
    zone: Mapping[str, Any] = field(default_factory=dict)
    device: Mapping[str, Any] = field(default_factory=dict)
    event: Mapping[str, Any] = field(default_factory=dict)
    reading: Mapping[str, Any] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)
    room_devices: Mapping[str, str] = field(default_factory=dict)  # kind -> device id

