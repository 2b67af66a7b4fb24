"""Staff users, the versions that void their (and guests') tokens, log-in throttling."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from hub.models import LoginThrottle, StaffUser, TokenVersion
from hub.store.rows import add, insert_ignoring_duplicates, table_of


def find_staff_user(*, session: Session, username: str) -> StaffUser | None:
    """The staff user of this exact username, active or not."""
    return session.exec(select(StaffUser).where(StaffUser.username == username)).first()


def change_staff_user(*, session: Session, user: StaffUser, active: bool | None = None,
                      password_hash: str | None = None) -> StaffUser:
    """Disable or enable a user, or set their password; each voids their tokens."""
    if active is not None:
        user.active = active
    if password_hash is not None:
        user.password_hash = password_hash
    session.add(user)
    session.flush()
    revoke_tokens(session=session, subject=token_subject("staff", user.username))
    return user


def add_staff_user(*, session: Session, username: str, password_hash: str,
                   roles: Sequence[str], now: datetime) -> StaffUser:
    """Create a staff user; Conflict when the username is taken."""
    return add(session=session, row=StaffUser(username=username, password_hash=password_hash,
                                              roles=sorted(set(roles)), created_at=now))


def list_staff_users(*, session: Session) -> list[StaffUser]:
    """Every staff user, by username."""
    return list(session.exec(select(StaffUser).order_by(col(StaffUser.username))).all())


def token_subject(typ: str, subject: str) -> str:
    """The key of a token's subject in TokenVersion: ``staff:<name>`` or ``guest:<id>``."""
    return f"{typ}:{subject}"


def token_version(*, session: Session, subject: str) -> int:
    """The version a token of ``subject`` must carry to be valid (0: never voided)."""
    row = session.get(TokenVersion, subject)
    return row.version if row else 0


def revoke_tokens(*, session: Session, subject: str) -> None:
    """Void every token of ``subject`` issued so far (one atomic bump, any worker)."""
    table = table_of(TokenVersion)
    insert_ignoring_duplicates(session=session, table=TokenVersion, subject=subject, version=0)
    session.connection().execute(sa.update(table).where(table.c.subject == subject)
                                 .values(version=table.c.version + 1))


def login_failures(*, session: Session, keys: Sequence[str]) -> list[LoginThrottle]:
    """The failure counts of these throttle keys (those that have any)."""
    return list(session.exec(select(LoginThrottle).where(col(LoginThrottle.key).in_(keys))))


def count_login_failure(*, session: Session, keys: Sequence[str], now: datetime,
                        forget_before: datetime) -> None:
    """One more failed log-in for each key (counted in the database: workers share it); a
    run whose last failure is older than ``forget_before`` starts again at one."""
    table = table_of(LoginThrottle)
    for key in keys:
        insert_ignoring_duplicates(session=session, table=LoginThrottle, key=key, failures=0)
        session.connection().execute(sa.update(table).where(table.c.key == key).values(
            failures=sa.case((table.c.last_failure_at < forget_before, 1),
                             else_=table.c.failures + 1),
            last_failure_at=now))


def clear_login_failures(*, session: Session, keys: Sequence[str]) -> None:
    """Forget the failed log-ins of these throttle keys (a log-in succeeded)."""
    table = table_of(LoginThrottle)
    session.connection().execute(sa.delete(table).where(table.c.key.in_(list(keys))))

