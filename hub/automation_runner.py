"""Runs automations after the fact, on their own thread: personalization never delays a door.

The bridge hands over what happened (:class:`Occurrence`) once the decision is
published; this runner gathers the facts from the database, asks
:func:`hub.automations.plan` what to do, carries it out through the bridge, and
records every run, retrying a failed action and reporting it, never losing it silently.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from devices.contract import Command, encode
from devices.topics import Channel, device_topic, guest_topic, staff_topic
from hub.automations import Facts, Planned, Rule, plan
from hub.db import session_scope

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]
FactsLoader = Callable[[Any, "Occurrence"], Facts | None]


@dataclass(frozen=True)
class Occurrence:
    """Something that happened that automations may react to."""

    trigger: str
    venue: str
    device_id: str
    guest_id: str | None
    at: datetime
    reason: str | None = None
    reading: float | None = None
    readings: dict[str, Any] | None = None  # a telemetry event's readings, as reported


class AutomationRunner:
    """A queue and one worker thread; counters of fired and failed actions per rule."""

    def __init__(self, engine: Engine, publish: Publish, load_facts: FactsLoader,
                 rules: Callable[[], Sequence[Rule]], *, attempts: int = 3,
                 learn: Callable[[Any, Occurrence], None] | None = None) -> None:
        self.engine = engine
        self.publish = publish
        self.load_facts = load_facts
        self.rules = rules
        self.attempts = attempts
        self.learn = learn
        self.fired: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self._queue: queue.Queue[Occurrence | None] = queue.Queue(10_000)
        self._thread = threading.Thread(target=self._work, name="hub-automations", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def submit(self, occurrence: Occurrence) -> None:
        """Hand over an occurrence; when the queue is full it is dropped and counted."""
        try:
            self._queue.put_nowait(occurrence)
        except queue.Full:
            self.failed["queue_full"] += 1
            log.warning("automation queue full: dropped a %s", occurrence.trigger)

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every submitted occurrence has been handled (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _work(self) -> None:
        while True:
            occurrence = self._queue.get()
            try:
                if occurrence is None:
                    return
                self._run(occurrence)
            except Exception:  # one bad occurrence must not stop the others
                log.exception("automations failed for a %s", getattr(occurrence, "trigger", "?"))
            finally:
                self._queue.task_done()

    def _run(self, occurrence: Occurrence) -> None:
        with session_scope(self.engine) as session:
            if self.learn is not None:
                self.learn(session, occurrence)  # preferences follow the guest's own hand
            facts = self.load_facts(session, occurrence)
        if facts is None:
            return
        for action in plan(self.rules(), facts):
            self._carry_out(occurrence, action)

    def _carry_out(self, occurrence: Occurrence, action: Planned) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                topic, payload = message_for(occurrence, action)
                self.publish(topic, payload)
                self.fired[action.rule_id] += 1
                return
            except Exception as exc:
                if attempt == self.attempts:
                    self.failed[action.rule_id] += 1
                    log.error("automation %s: %s failed after %d attempts: %s",
                              action.rule_id, action.kind, attempt, exc)
                time.sleep(0.05 * attempt)


def message_for(occurrence: Occurrence, action: Planned) -> tuple[str, bytes]:
    """The MQTT message that carries out a planned action."""
    if action.kind in ("command", "greet"):
        if action.device_id is None:
            raise ValueError(f"{action.rule_id}: a command needs a device")
        command = Command(command_id=uuid.uuid4().hex, name=action.name or "show",
                          params=dict(action.params), issued_at=occurrence.at)
        return device_topic(occurrence.venue, action.device_id, Channel.COMMANDS), \
            encode(command)
    if action.kind in ("notify_guest", "offer"):
        if occurrence.guest_id is None:
            raise ValueError(f"{action.rule_id}: nobody to notify")
        body = {"v": 1, "kind": action.kind, "rule": action.rule_id, **action.params}
        return guest_topic(occurrence.venue, occurrence.guest_id), _json(body)
    body = {"v": 1, "kind": "alert", "rule": action.rule_id, "at": occurrence.at.isoformat(),
            **action.params}
    return staff_topic(occurrence.venue), _json(body)


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, default=str).encode()
