"""Broker logins that were re-issued or revoked: the database side of
:data:`hub.broker_auth.Logins`.

A login is derived from the hub's broker key, so revoking one cannot delete a password:
it records a generation (re-issued: the derived password changes) or a revocation (no
password opens it), and both brokers follow the record. The embedded broker gets it from
its hub within a second (:class:`LoginFollower`); Mosquitto from the files ``hub provision
mosquitto`` writes, reloaded with SIGHUP.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.broker_auth import Logins, can_own_credentials, device_username
from hub.models import BrokerCredential, utcnow
from hub.store import devices
from hub.store import rows as store_rows

log = logging.getLogger(__name__)


def current(session: Session) -> dict[str, int | None]:
    """Every login that is not at generation 0: its generation, or None when revoked (or
    its device's venue is closed or deleted)."""
    rows = devices.broker_credentials(session=session)
    logins = {row.username: None if row.revoked else row.generation for row in rows}
    closed = devices.devices_of_closed_venues(session=session)
    for venue_id, device_id in closed:
        if can_own_credentials(venue_id):
            logins[device_username(venue_id, device_id)] = None
    return logins


def generation_of(session: Session, username: str) -> int | None:
    """The login's generation now, or None while it is revoked."""
    row = store_rows.find(session=session, model=BrokerCredential, key=username)
    if row is None:
        return 0
    return None if row.revoked else row.generation


def _row(session: Session, username: str) -> BrokerCredential:
    row = devices.lock_broker_credential(session=session, username=username)
    if row is None:
        row = BrokerCredential(username=username)
        session.add(row)
    return row


def reissue(session: Session, username: str) -> int:
    """A new password for the login (the old one stops); returns its generation."""
    row = _row(session, username)
    row.generation += 1
    row.revoked = False
    row.changed_at = utcnow()
    session.flush()
    return row.generation


def revoke(session: Session, username: str) -> None:
    """No password opens the login until it is re-issued."""
    row = _row(session, username)
    row.revoked = True
    row.changed_at = utcnow()
    session.flush()


class LoginFollower:
    """Hands the embedded broker every change to the logins, polling the database.

    Polling, not a signal from the API: any hub process may change a login (the API may run
    apart from the process that runs the broker), and the database is what they share.
    """

    def __init__(self, engine: Engine, apply: Callable[[Logins], None], *,
                 every: float = 0.5) -> None:
        self._engine = engine
        self._apply = apply
        self._every = every
        self._stop = threading.Event()
        self._last: dict[str, int | None] | None = None
        self._thread = threading.Thread(target=self._run, name="hub-broker-logins",
                                        daemon=True)

    def read(self) -> dict[str, int | None]:
        """The logins now (and remember them as handed over)."""
        with Session(self._engine) as session:
            self._last = current(session)
        return dict(self._last)

    def start(self) -> LoginFollower:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                with Session(self._engine) as session:
                    logins = current(session)
                if logins != self._last:
                    self._apply(logins)
                    self._last = logins
            except sa.exc.SQLAlchemyError:  # the database is away: try again next round
                log.warning("could not read the broker logins; retrying", exc_info=True)
            except Exception:  # the broker is restarting: the watchdog hands it the logins
                log.exception("could not hand the broker its logins; retrying")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(5)
