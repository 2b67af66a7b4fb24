"""The scheduled telemetry purge: once when the hub starts, then every day, on its own thread.

Several hub workers sharing a database each run it: deleting what is already gone
is harmless, so they need no coordination.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from hub.db import database_clock, session_scope
from hub.models import utcnow
from hub.store.events import purge_telemetry

log = logging.getLogger(__name__)

# Rows deleted per transaction: short write locks, so taps are decided in between.
BATCH = 5_000


class Retention:
    """Purges telemetry older than ``days`` now and then every ``interval``."""

    def __init__(self, engine: Engine, *, days: int, interval: timedelta = timedelta(days=1),
                 clock: Callable[[], datetime] = utcnow,
                 gate: Callable[[str, timedelta], bool] | None = None) -> None:
        self.engine, self.days, self.interval, self.clock = engine, days, interval, clock
        self.gate = gate  # several hub workers: one purges per interval (hub.leases)
        self.runs = 0  # completed purges, for tests and health
        self.purged = 0  # rows deleted since start
        self.ran = threading.Event()  # set after the first purge (done or failed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Purge now, in batches; how many rows went."""
        now, total = self.clock(), 0
        while not self._stop.is_set():
            with session_scope(self.engine) as session:
                gone = purge_telemetry(session=session, now=now, days=self.days, limit=BATCH)
            total += gone
            if gone < BATCH:
                break
        self.runs += 1
        self.purged += total
        if total:
            log.info("purged %d telemetry rows older than %d days", total, self.days)
        return total

    def _loop(self) -> None:
        while True:
            try:
                if self.gate is None or self.gate("retention", self.interval):
                    self.run_once()
            except Exception:  # a failed purge must not end the schedule: try tomorrow
                log.exception("telemetry purge failed")
            finally:
                self.ran.set()
            if self._stop.wait(self.interval.total_seconds()):
                return

    def start(self) -> Retention:
        """Start the thread; the first purge runs at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="hub-retention",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (a purge under way ends after its current batch)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def start(engine: Engine, *, days: int, interval: timedelta = timedelta(days=1),
          gate: Callable[[str, timedelta], bool] | None = None) -> Retention:
    """A started :class:`Retention`: purge now, then every ``interval``; its cut-off by
    the database's clock (a worker whose clock drifted a year ahead would purge all)."""
    return Retention(engine, days=days, interval=interval, gate=gate,
                     clock=database_clock(engine, utcnow)).start()
