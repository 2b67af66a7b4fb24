"""Each tap-deciding process writes its state to the database every few seconds (a
``WorkerBeat`` row), so the API of a fleet, which decides nothing itself, can tell
whether the workers are deciding (``GET /health``, ``hub status``)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from hub.db import brief, database_away, database_clock, session_scope
from hub.health import BEAT_EVERY, bridge_problems
from hub.models import utcnow
from hub.store import workers

log = logging.getLogger(__name__)


class Heartbeat:
    """A thread writing ``snapshot()``'s verdict under ``name`` every ``BEAT_EVERY``."""

    def __init__(self, engine: Engine, name: str, snapshot: Callable[[], dict[str, Any]],
                 deadline_ms: int) -> None:
        self.engine, self.name, self.snapshot, self.deadline_ms = (
            engine, name, snapshot, deadline_ms)
        # The database's clock: the API compares beats from many machines with it.
        self.clock = database_clock(engine, utcnow)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hub-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the beats with a last one that says this worker stopped (not: fell silent)."""
        self._stop.set()
        self._thread.join(5)
        try:
            self.beat(stopped=True)
        except Exception as exc:  # the database away at the stop: silence says it then
            log.debug("last heartbeat not written: %s", brief(exc))

    def beat(self, *, stopped: bool = False) -> None:
        snap = self.snapshot()
        problems = ["stopped"] if stopped else bridge_problems(snap, self.deadline_ms)
        with session_scope(self.engine) as session:
            workers.beat(session=session, name=self.name, host=socket.gethostname(),
                         pid=os.getpid(), seen_at=self.clock(), deciding=not problems,
                         queue_depth=int(snap.get("queue_depth") or 0),
                         problems="; ".join(problems))

    def _loop(self) -> None:
        away = False  # an idle worker learns of a database outage here first: told once
        while not self._stop.is_set():
            try:
                self.beat()
                if away:
                    log.warning("the database answers again (heartbeat)")
                away = False
            except Exception as exc:  # the database away: the API will say we fell silent
                if not database_away(exc):
                    log.exception("heartbeat not written")
                elif not away:
                    log.error("the database is out of reach (%s): heartbeats wait",
                              brief(exc))
                away = database_away(exc)
            self._stop.wait(BEAT_EVERY.total_seconds())
