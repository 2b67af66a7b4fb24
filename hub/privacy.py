"""What the guest controls: their profile, their consents, a copy of their data, erasure.

Also telemetry retention. Functions take a session and change nothing outside it;
the caller commits (and audits: the API through its AuditDep, the CLI itself).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, get_args

from sqlmodel import Session

from devices.topics import valid_id
from hub import appliance_queue, broker_logins
from hub.broker_auth import guest_username
from hub.models import (
    Consent,
    ConsentChange,
    ConsentPurpose,
    CredentialStatus,
    Guest,
    GuestPreferences,
    RunStatus,
)
from hub.store import errors, guests, money, rows
from hub.store import privacy as privacy_store

PURPOSES: tuple[str, ...] = get_args(ConsentPurpose)
ERASED_PREFIX = "erased-"
# A copy of someone's data must be complete: pages of the existing queries, this large.
_EVERYTHING = 1_000_000_000
# What a scrubbed name reads as in a decision's text ("Welcome, guest").
_ANONYMOUS = "guest"


def has_consent(consents: Iterable[Consent], purpose: str) -> bool:
    """Whether ``purpose`` is granted; no row, or any other purpose's row, means no."""
    return any(c.purpose == purpose and c.granted for c in consents)


# ------------------------------------------------------------------ profile


def set_preferences(session: Session, *, guest_id: str, values: Mapping[str, Any],
                    now: datetime) -> tuple[GuestPreferences, list[str]]:
    """Replace the guest's profile with ``values`` (every field; an omitted one is cleared);
    returns it and the names of the fields that changed."""
    row = privacy_store.preferences_of(session=session, guest_id=guest_id)
    before = (row or GuestPreferences(guest_id=guest_id)).model_dump()
    changed = sorted(name for name, value in values.items() if before.get(name) != value)
    row = row or GuestPreferences(guest_id=guest_id)
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = now
    session.add(row)
    session.flush()
    return row, changed


def consent_state(session: Session, *, guest_id: str) -> dict[str, Any]:
    """Every purpose (no row: not granted) and the whole history, oldest first: the
    fields of the API's ConsentState."""
    rows = {c.purpose: c for c in privacy_store.consents_of(session=session, guest_id=guest_id)}
    consents = [{"purpose": p, "granted": has_consent(rows.values(), p),
                 "changed_at": rows[p].changed_at if p in rows else None} for p in PURPOSES]
    history = privacy_store.consent_history(session=session, guest_id=guest_id)
    return {"guest_id": guest_id, "consents": consents, "history": history}


def set_consent(session: Session, *, guest_id: str, purpose: str, granted: bool, actor: str,
                now: datetime) -> tuple[Consent, bool]:
    """Grant or withdraw one purpose; returns the row and whether it changed.

    A change (the first answer included) is kept in the history; saying the same
    again is not a change.
    """
    if purpose not in PURPOSES:
        raise errors.Invalid(f"purpose must be one of {', '.join(PURPOSES)}")
    row = privacy_store.consent_of(session=session, guest_id=guest_id, purpose=purpose)
    changed = row is None or row.granted != granted
    if not changed:
        assert row is not None
        return row, False
    row = row or Consent(guest_id=guest_id, purpose=purpose)
    row.granted, row.changed_at = granted, now
    session.add(row)
    session.add(ConsentChange(guest_id=guest_id, purpose=purpose, granted=granted, at=now,
                              actor=actor[:64]))
    if not granted:  # nothing planned under that consent goes out any more
        appliance_queue.cancel_for_consent(session, guest_id=guest_id, purpose=purpose)
    session.flush()
    return row, True


# ------------------------------------------------------------------- export


def export_guest(session: Session, *, guest_id: str, now: datetime) -> dict[str, Any]:
    """Everything the hub holds about the guest, as one document (the fields of the API's
    GuestExport, rows as they are). NotFound if none.

    Secrets stay out: the spending policy says ``has_pin``, credentials carry no key
    material (a phone key's jti is an id that locks publish anyway). Devices'
    telemetry is not the guest's record and is not included, except what the guest's own
    wearables reported while paired to them.
    """
    guest = rows.get(session=session, model=Guest, key=guest_id)
    policy = guests.spending_policy_of(session=session, guest_id=guest_id)
    prefs = privacy_store.preferences_of(session=session, guest_id=guest_id)
    events = privacy_store.events_of(session=session, guest_id=guest_id)
    accounts = privacy_store.accounts_of(session=session, guest_id=guest_id)
    transactions = money.transactions(session=session, guest_id=guest_id, limit=_EVERYTHING)
    pairings = guests.pairings_of(session=session, guest_id=guest_id)
    document: dict[str, Any] = {
        "exported_at": now,
        "guest": guest,
        "preferences": prefs,
        "consent": consent_state(session, guest_id=guest_id),
        "spending_policy": None if policy is None else {
            "guest_id": policy.guest_id, "payer_guest_id": policy.payer_guest_id,
            "payment_enabled": policy.payment_enabled, "daily_limit": policy.daily_limit,
            "pin_threshold": policy.pin_threshold, "has_pin": policy.pin_hash is not None},
        "credentials": privacy_store.credentials_of(session=session, guest_id=guest_id),
        "entitlements": privacy_store.entitlements_by_validity(session=session, guest_id=guest_id),
        "accounts": accounts,
        "transactions": list(reversed(transactions)),  # oldest first, like the journey
        "events": events,
        "presence": privacy_store.presence_of(session=session, guest_id=guest_id),
        "daily_spend": privacy_store.daily_spend_of(session=session, guest_id=guest_id),
        "wearables": pairings,  # open and closed: whose readings were whose
        "wearable_readings": guests.readings_of(session=session, pairings=pairings),
        "automation_runs": privacy_store.automation_runs_of(session=session, guest_id=guest_id),
    }
    return document


# ------------------------------------------------------------------- erasure


def is_erased(guest: Guest) -> bool:
    """Whether the guest was erased before (their name is then only the pseudonym)."""
    return guest.name.startswith(ERASED_PREFIX) and guest.email is None \
        and guest.display_name is None


@dataclass(frozen=True)
class Erasure:
    """What an erasure did: counts and the pseudonym, nothing of what was erased."""

    guest_id: str
    pseudonym: str
    credentials_revoked: int
    events_scrubbed: int
    preferences_deleted: bool
    consents_deleted: int
    wearables_unpaired: int
    readings_deleted: int
    automation_runs_scrubbed: int

    def audit_detail(self) -> dict[str, Any]:
        """What the audit log keeps of it: the counts and the pseudonym, not the guest id."""
        detail = asdict(self)
        del detail["guest_id"]
        return detail


def erase_guest(session: Session, *, guest_id: str, now: datetime) -> Erasure:
    """Remove the guest's personal data and revoke their credentials. NotFound if none.

    Kept, under the pseudonym: the guest row (its id carries no personal data), their
    accounts, transactions and postings (the books must still balance and be audited),
    entitlements and the journey's decisions. Revoked phone keys keep their jti, so
    offline locks keep refusing them. Erasing again changes nothing more.
    """
    guest = rows.get(session=session, model=Guest, key=guest_id)
    prefs = privacy_store.preferences_of(session=session, guest_id=guest_id)
    again = is_erased(guest)
    # Every form of their name that a decision's text may hold ("Welcome, Charlie").
    names = {n for n in (None if again else guest.name, guest.display_name,
                         prefs.display_name if prefs else None) if n}
    # Random, not derived from anything about the guest: it must not lead back to them.
    pseudonym = guest.name.removeprefix(ERASED_PREFIX) if again else secrets.token_hex(6)
    guest.name, guest.display_name, guest.email = f"{ERASED_PREFIX}{pseudonym}", None, None
    session.add(guest)

    if prefs is not None:
        session.delete(prefs)
    consents = privacy_store.consents_of(session=session, guest_id=guest_id)
    for row in consents:
        session.delete(row)
    for change in privacy_store.consent_history(session=session, guest_id=guest_id):
        session.delete(change)

    revoked = 0
    for credential in privacy_store.credentials_of(session=session, guest_id=guest_id):
        credential.label = None  # staff may have written the guest's name on it
        if credential.status is not CredentialStatus.REVOKED:
            credential.status, credential.status_changed_at = CredentialStatus.REVOKED, now
            revoked += 1
        session.add(credential)

    # Their app's broker login too: an erased guest's phone hears nothing more.
    if valid_id(guest_id):  # else no login was ever made for it
        broker_logins.revoke(session, guest_username(guest_id))

    policy = guests.spending_policy_of(session=session, guest_id=guest_id)
    if policy is not None:
        # The PIN is something the guest chose; nobody pays with these credentials again.
        policy.pin_hash, policy.payment_enabled = None, False
        session.add(policy)

    # Their watches' readings are health data: gone, those of each pairing's window only
    # (the watch's other wearers keep theirs), and so are the pairings, open or closed.
    pairings = guests.pairings_of(session=session, guest_id=guest_id)
    readings = guests.delete_readings(session=session, pairings=pairings)
    for pairing in pairings:
        session.delete(pairing)
    # What automations did stays counted for the rules' statistics, about nobody.
    runs = privacy_store.automation_runs_of(session=session, guest_id=guest_id)
    for run in runs:
        run.guest_id, run.params, run.detail = None, {}, None
        if run.status is RunStatus.QUEUED:  # nobody to set a room for any more
            run.status, run.detail = RunStatus.EXPIRED, "the guest was erased"
        session.add(run)

    scrubbed = 0
    for event in privacy_store.events_of(session=session, guest_id=guest_id):
        names_here = names | ({event.guest_name} if event.guest_name else set())
        text = scrub(event.text, names_here)
        if event.guest_name is not None or text != event.text:
            event.guest_name, event.text = None, text
            session.add(event)
            scrubbed += 1
    session.flush()
    return Erasure(guest_id=guest_id, pseudonym=pseudonym, credentials_revoked=revoked,
                   events_scrubbed=scrubbed, preferences_deleted=prefs is not None,
                   consents_deleted=len(consents), wearables_unpaired=len(pairings),
                   readings_deleted=readings, automation_runs_scrubbed=len(runs))


def scrub(text: str, names: Iterable[str]) -> str:
    """``text`` with every whole-word occurrence of ``names`` replaced by "guest"."""
    for name in sorted(names, key=len, reverse=True):  # "Charlie Baker" before "Charlie"
        text = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", _ANONYMOUS, text)
    return text
