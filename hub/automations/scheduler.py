"""Scheduled automations: a rule with trigger ``schedule`` fires daily at its venue time;
and the sweep of commands that waited too long for an offline appliance.

A schedule rule names its time with the filter ``event.schedule: 'HH:MM'`` (venue
time). When that time has come (and less than :data:`GRACE` ago: a morning greeting
is not sent at noon after a restart) the scheduler records the firing for the day
(:class:`~hub.models.ScheduleFiring`; the primary key lets one hub worker win) and
hands the runner one occurrence per guest on site: everyone with a stay or a ticket
valid now in a zone of the venue. The runner then plans as for any event: consent,
conditions, actions on the guest's room.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from hub import appliance_queue
from hub.automations.occurrence import Occurrence
from hub.automations.rules import Rule
from hub.db import session_scope
from hub.models import ScheduleFiring, utcnow
from hub.store import automations as store

log = logging.getLogger(__name__)

GRACE = timedelta(hours=1)
SCHEDULE_FILTER = "event.schedule"


def schedule_of(rule: Rule) -> time | None:
    """The venue time a schedule rule fires at; None for other rules or a bad time."""
    if rule.trigger != "schedule" or not rule.enabled:
        return None
    try:
        at = time.fromisoformat(str(rule.filters.get(SCHEDULE_FILTER)))
    except ValueError:
        return None
    return at if at.tzinfo is None else None


def due(at: time, local_now: datetime) -> bool:
    """Whether a daily time ``at`` has come today and is less than GRACE ago."""
    start = local_now.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    return start <= local_now < start + GRACE


def guests_on_site(session: Session, venue_id: str, now: datetime) -> list[str]:
    """Guests with a stay or a ticket valid now in a zone of the venue, by id."""
    zones = store.zone_ids_of(session=session, venue_id=venue_id)
    rows = store.stays_and_tickets_at(session=session, at=now)
    return sorted({e.guest_id for e in rows if zones.intersection(e.zone_ids)})


def claim(engine: Engine, rule_id: str, venue_id: str, day: str, now: datetime) -> bool:
    """Record today's firing; False when it was recorded before (by us or another worker)."""
    try:
        with session_scope(engine) as session:
            session.add(ScheduleFiring(rule_id=rule_id, venue_id=venue_id, day=day,
                                       fired_at=now))
    except IntegrityError:
        return False
    return True


class Scheduler:
    """Checks the schedule rules every ``interval`` seconds on its own thread."""

    def __init__(self, engine: Engine, submit: Callable[[Occurrence], None],
                 rules: Callable[[], Sequence[Rule]], *, interval: float = 15.0,
                 clock: Callable[[], datetime] = utcnow,
                 publish: Callable[[str, bytes], None] | None = None,
                 command_ttl: timedelta | None = None,
                 gate: Callable[[str, timedelta], bool] | None = None) -> None:
        self.engine, self.submit, self.rules = engine, submit, rules
        self.interval, self.clock = interval, clock
        # Also sweeps the commands that waited too long for an offline appliance.
        self.publish, self.command_ttl = publish, command_ttl
        # Several hub workers: each check runs on one of them per interval (hub.leases).
        self.gate = gate
        self.fired = 0  # occurrences handed to the runner
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Fire what is due now; how many occurrences were handed over."""
        scheduled = [(rule, at) for rule in self.rules() if (at := schedule_of(rule))]
        if not scheduled:
            return 0
        now = self.clock()
        with session_scope(self.engine) as session:
            venues = store.venue_timezones(session=session)
        handed = 0
        for venue_id, tz in venues:
            local = now.astimezone(ZoneInfo(tz))
            for rule, at in scheduled:
                if not due(at, local) or not claim(self.engine, rule.id, venue_id,
                                                   local.date().isoformat(), now):
                    continue
                with session_scope(self.engine) as session:
                    guests = guests_on_site(session, venue_id, now)
                for guest_id in guests:
                    self.submit(Occurrence("schedule", venue_id, None, guest_id, now,
                                           schedule=str(rule.filters[SCHEDULE_FILTER]),
                                           rule_id=rule.id))
                handed += len(guests)
                log.info("schedule %s at %s: %d guests of %s", rule.id, at, len(guests),
                         venue_id)
        self.fired += handed
        return handed

    def sweep(self) -> int:
        """Expire queued commands older than ``command_ttl`` and alert staff; how many."""
        if self.publish is None or self.command_ttl is None:
            return 0
        with session_scope(self.engine) as session:
            alerts = appliance_queue.expire_stale(session, now=self.clock(),
                                                  ttl=self.command_ttl)
        for topic, payload in alerts:  # after the commit, like every reply of the hub
            self.publish(topic, payload)
        return len(alerts)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for job in (self.run_once, self.sweep):
                try:
                    if self.gate is None or self.gate(f"scheduler.{job.__name__}",
                                                      timedelta(seconds=self.interval)):
                        job()
                except Exception:  # a failed check must not end the schedule
                    log.exception("scheduled %s failed", job.__name__)
            self._stop.wait(self.interval)

    def start(self) -> Scheduler:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="hub-scheduler",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
