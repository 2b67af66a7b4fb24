"""The rules in force: the shipped rules, as staff changed them in the database.

A stored rule with a shipped rule's id replaces it (that is how a shipped rule is
disabled or tuned); other stored rules come after the shipped ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.automations.catalogue import shipped
from hub.automations.rules import Rule, RuleError, parse_rule, rule_to_dict
from hub.db import session_scope
from hub.models import AutomationRule, utcnow
from hub.store import automations as store

log = logging.getLogger(__name__)


def rule_of(row: AutomationRule) -> Rule:
    """The rule a stored row holds."""
    return parse_rule({"id": row.id, "name": row.name, "purpose": row.purpose,
                       "trigger": row.trigger, "filters": row.filters or {},
                       "conditions": row.conditions or [], "actions": row.actions or [],
                       "enabled": row.enabled})


def row_of(rule: Rule, *, now: datetime | None = None) -> AutomationRule:
    """A new row holding ``rule``."""
    now = now or utcnow()
    return AutomationRule(**rule_to_dict(rule), created_at=now, updated_at=now)


def save(session: Session, rule: Rule, *, now: datetime | None = None) -> bool:
    """Create or replace the stored rule; True when it was created."""
    return store.save_rule(session=session, values=rule_to_dict(rule),
                                 now=now or utcnow())


def stored_rules(session: Session) -> list[Rule]:
    """The stored rules in the order they were made; a row that cannot be read is skipped."""
    rules = []
    for row in store.rule_rows(session=session):
        try:
            rules.append(rule_of(row))
        except RuleError as exc:
            log.error("stored automation %s cannot be read: %s", row.id, exc)
    return rules


def merge(shipped_rules: Iterable[Rule], stored: Iterable[Rule]) -> list[Rule]:
    """The shipped rules, each replaced by a stored one of its id; then the other stored."""
    by_id = {r.id: r for r in stored}
    merged = [by_id.pop(r.id, r) for r in shipped_rules]
    return merged + list(by_id.values())


def load_rules(session: Session,
               shipped_rules: Callable[[], Sequence[Rule]] = shipped) -> list[Rule]:
    """The rules in force: the shipped ones, overridden by stored ones; the stored added."""
    return merge(shipped_rules(), stored_rules(session))


def known_devices(session: Session) -> list[str]:
    """Every device id, for :func:`hub.automations.rules.validate`."""
    return store.device_ids(session=session)


class CachedRules:
    """The runner's ``rules``: :func:`load_rules` from a fresh session, kept ``ttl`` seconds.

    A burst of taps reads the table once; a change is in force within ``ttl``. When the
    database cannot be read, the last rules read stay in force (the shipped ones at first).
    """

    def __init__(self, engine: Engine, *, ttl: float = 2.0,
                 shipped_rules: Callable[[], Sequence[Rule]] = shipped,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.ttl = ttl
        self.shipped_rules = shipped_rules
        self.clock = clock
        self._lock = threading.Lock()
        self._rules: list[Rule] | None = None
        self._at = 0.0

    def __call__(self) -> list[Rule]:
        with self._lock:
            now = self.clock()
            if self._rules is not None and now - self._at < self.ttl:
                return self._rules
            try:
                with session_scope(self.engine) as session:
                    self._rules = load_rules(session, self.shipped_rules)
            except Exception:
                log.exception("automations: cannot read the stored rules; keeping the last")
                if self._rules is None:
                    return list(self.shipped_rules())
            self._at = now
            return self._rules

    def invalidate(self) -> None:
        with self._lock:
            self._rules = None

