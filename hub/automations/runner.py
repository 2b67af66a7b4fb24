"""Runs automations after the fact, on their own thread: personalization never delays a door.

The bridge hands over what happened (:class:`Occurrence`) once the decision is
published; this runner gathers the facts from the database, asks
:func:`hub.automations.engine.plan` what to do, carries it out through the bridge, and
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
from typing import Any

from sqlalchemy.engine import Engine

from devices.contract import Command, encode
from devices.topics import Channel, device_topic, guest_topic, staff_topic
from hub.automations.engine import Planned, plan
from hub.automations.facts import Facts
from hub.automations.occurrence import Occurrence
from hub.automations.rules import Rule
from hub.db import brief, database_away, session_scope
from hub.models import AutomationRun, RunStatus, utcnow
from hub.notices import guest_notice, staff_alert
from hub.store import automations as store

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]
FactsLoader = Callable[[Any, Occurrence], Facts | None]


class AutomationRunner:
    """A queue and one worker thread; counters of fired and failed actions per rule."""

    def __init__(self, engine: Engine, publish: Publish, load_facts: FactsLoader,
                 rules: Callable[[], Sequence[Rule]], *, attempts: int = 3,
                 learn: Callable[[Any, Occurrence], None] | None = None,
                 might_apply: Callable[[Any, Occurrence, Sequence[Rule]], bool] | None = None,
                 reader: Engine | None = None) -> None:
        self.engine = engine
        # Facts are read through ``reader`` when given: reads that never hold the write
        # lock the bridge needs to record decisions (SQLite).
        self.reader = reader or engine
        self.publish = publish
        self.load_facts = load_facts
        self.rules = rules
        self.attempts = attempts
        self.learn = learn
        # A cheap check before the facts (a guest who consented to nothing, say).
        self.might_apply = might_apply
        # This process's counts (tests, logs); the API's stats come from the database.
        self.fired: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.queued: Counter[str] = Counter()
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
            except Exception as exc:  # one bad occurrence must not stop the others
                trigger = getattr(occurrence, "trigger", "?")
                if database_away(exc):  # the bridge says so, once: no traceback per tap
                    self.failed["database_away"] += 1
                    log.warning("automations skipped for a %s: the database is out of reach "
                                "(%s)", trigger, brief(exc))
                else:
                    log.exception("automations failed for a %s", trigger)
            finally:
                self._queue.task_done()

    def _run(self, occurrence: Occurrence) -> None:
        rules = self.rules()  # before the session: it may read the database itself
        if occurrence.rule_id is not None:
            rules = [r for r in rules if r.id == occurrence.rule_id]
        if self.learn is not None and occurrence.trigger == "telemetry":
            try:
                with session_scope(self.engine) as session:
                    self.learn(session, occurrence)  # preferences follow the guest's hand
            except Exception:  # learning failed: the rules still run for this reading
                self.failed["learn"] += 1
                log.exception("learning from %s failed", occurrence.device_id)
        # Most taps concern no rule: then the facts are not worth a query.
        relevant = [r for r in rules if r.enabled and r.trigger == occurrence.trigger]
        if not relevant:
            return
        with session_scope(self.reader) as session:
            if self.might_apply is not None and not self.might_apply(session, occurrence,
                                                                     relevant):
                return
            facts = self.load_facts(session, occurrence)
            if facts is None:
                return
            broken: list[tuple[Rule, Exception]] = []
            actions = plan(relevant, facts,
                           on_error=lambda rule, exc: broken.append((rule, exc)))
            targets = {a.device_id for a in actions if a.kind in ("command", "greet")}
            online = store.online(session=session, device_ids=targets)
        guest_id = facts.guest.get("id")
        for rule, exc in broken:  # recorded, so the rule's stats show it failing
            log.error("automation %s cannot be evaluated: %r", rule.id, exc)
            self.failed[rule.id] += 1
            self._record(AutomationRun(rule_id=rule.id, action="evaluate", guest_id=guest_id,
                                       status=RunStatus.FAILED, detail=repr(exc)[:500],
                                       created_at=occurrence.at))
        for action in actions:
            offline = action.kind in ("command", "greet") and not online.get(
                action.device_id or "", False)
            self._carry_out(occurrence, action, guest_id=guest_id, offline=offline)

    def _carry_out(self, occurrence: Occurrence, action: Planned, *, guest_id: str | None,
                   offline: bool) -> None:
        run = AutomationRun(rule_id=action.rule_id, action=action.kind, guest_id=guest_id,
                            device_id=action.device_id, name=action.name,
                            params=_plain(action.params), purposes=sorted(action.purposes),
                            created_at=occurrence.at)
        if action.kind in ("command", "greet"):
            run.command_id = uuid.uuid4().hex
        if offline and self._queue_while_offline(run):  # for when it is back: appliance_queue
            self.queued[action.rule_id] += 1
            return
        try:  # built once: every attempt sends the same message, with the same id
            topic, payload = message_for(occurrence, action, run)
        except Exception as exc:  # nobody to notify, a command without a device ...
            run.status, run.detail = RunStatus.FAILED, str(exc)[:500]
            self.failed[action.rule_id] += 1
            log.error("automation %s: no %s message: %s", action.rule_id, action.kind, exc)
            self._record(run)
            return
        for attempt in range(1, self.attempts + 1):
            try:
                self.publish(topic, payload)
                run.status, run.sent_at = RunStatus.SENT, utcnow()
                self.fired[action.rule_id] += 1
                break
            except Exception as exc:
                if attempt == self.attempts:
                    run.status, run.detail = RunStatus.FAILED, str(exc)[:500]
                    self.failed[action.rule_id] += 1
                    log.error("automation %s: %s failed after %d attempts: %s",
                              action.rule_id, action.kind, attempt, exc)
                else:
                    time.sleep(0.05 * attempt)
        self._record(run)

    def _queue_while_offline(self, run: AutomationRun) -> bool:
        """Queue the command if its device is still offline; False if it came back since.

        Decided in a write transaction holding the device's row (SQLite: the write lock),
        as the bridge marks a device online and releases its queue in one: either the
        bridge sees this command queued, or this sees the device online and sends it now.
        (Read a moment earlier, a device that came back in between kept the command
        queued until its next heartbeat.)
        """
        try:
            with session_scope(self.engine) as session:
                device = store.device_for_update(session=session, device_id=run.device_id)
                if device is not None and device.online:
                    return False
                run.status = RunStatus.QUEUED
                session.add(run)
            return True
        except Exception:
            self.failed["record"] += 1
            log.exception("automation %s: could not queue a command for %s", run.rule_id,
                          run.device_id)
            return True  # nothing to send twice: the failure is logged and counted

    def _record(self, run: AutomationRun) -> None:
        try:
            with session_scope(self.engine) as session:
                session.add(run)
        except Exception:  # the action happened (or not) all the same: say so in the log
            self.failed["record"] += 1
            log.exception("automation %s: could not record a %s run", run.rule_id, run.status)


def message_for(occurrence: Occurrence, action: Planned,
                run: AutomationRun | None = None) -> tuple[str, bytes]:
    """The MQTT message that carries out a planned action: a :class:`Command` to a device,
    a :class:`GuestNotice` to the guest (``notify_guest`` is kind ``notice``) or a
    :class:`StaffAlert` to staff; see :mod:`hub.notices` for how parameters fit them."""
    if action.kind in ("command", "greet"):
        if action.device_id is None:
            raise ValueError(f"{action.rule_id}: a command needs a device")
        command = Command(command_id=run.command_id if run and run.command_id
                          else uuid.uuid4().hex, name=action.name or "show",
                          params=dict(action.params), issued_at=occurrence.at)
        return device_topic(occurrence.venue, action.device_id, Channel.COMMANDS), \
            encode(command)
    if action.kind in ("notify_guest", "offer"):
        if occurrence.guest_id is None and (run is None or run.guest_id is None):
            raise ValueError(f"{action.rule_id}: nobody to notify")
        guest = occurrence.guest_id or (run.guest_id if run else None)
        notice = guest_notice("offer" if action.kind == "offer" else "notice",
                              action.rule_id, occurrence.at, action.params)
        return guest_topic(occurrence.venue, str(guest)), encode(notice)
    alert = staff_alert(action.rule_id, occurrence.at, action.params)
    return staff_topic(occurrence.venue), encode(alert)


def _plain(params: Any) -> dict[str, Any]:
    """Params as JSON holds them (a rendered template may be a list or a number)."""
    loaded: dict[str, Any] = json.loads(json.dumps(dict(params), default=str))
    return loaded
