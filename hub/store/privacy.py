"""What the guest controls and what the hub holds about them: preferences, consents and
their history, the rows of a guest's copy and of their erasure."""

from __future__ import annotations

from sqlmodel import Session, col, select

from hub.models import (
    Account,
    AutomationRun,
    Consent,
    ConsentChange,
    Credential,
    DailySpend,
    Entitlement,
    Event,
    GuestPreferences,
    Presence,
)


def preferences_of(*, session: Session, guest_id: str) -> GuestPreferences | None:
    """The guest's profile; None when never set."""
    return session.get(GuestPreferences, guest_id)


def consent_of(*, session: Session, guest_id: str, purpose: str) -> Consent | None:
    """The guest's answer for one purpose; None when never asked."""
    return session.get(Consent, (guest_id, purpose))


def consents_of(*, session: Session, guest_id: str) -> list[Consent]:
    """The guest's answer for every purpose they were asked about."""
    return list(session.exec(select(Consent).where(Consent.guest_id == guest_id)).all())


def consent_history(*, session: Session, guest_id: str) -> list[ConsentChange]:
    """Every change of the guest's consents, oldest first."""
    return list(session.exec(select(ConsentChange).where(ConsentChange.guest_id == guest_id)
                             .order_by(col(ConsentChange.id))).all())


def events_of(*, session: Session, guest_id: str) -> list[Event]:
    """The guest's journey, oldest first."""
    return list(session.exec(select(Event).where(Event.guest_id == guest_id)
                             .order_by(col(Event.id))).all())


def accounts_of(*, session: Session, guest_id: str) -> list[Account]:
    """The guest's accounts, open and closed, oldest first."""
    return list(session.exec(select(Account).where(Account.guest_id == guest_id)
                             .order_by(col(Account.created_at), col(Account.id))).all())


def credentials_of(*, session: Session, guest_id: str) -> list[Credential]:
    """The guest's bands and keys, any status, oldest first."""
    return list(session.exec(select(Credential).where(Credential.guest_id == guest_id)
                             .order_by(col(Credential.created_at), col(Credential.id))).all())


def entitlements_by_validity(*, session: Session, guest_id: str) -> list[Entitlement]:
    """The guest's entitlements, any status, in the order they start."""
    return list(session.exec(select(Entitlement).where(Entitlement.guest_id == guest_id)
                             .order_by(col(Entitlement.valid_from), col(Entitlement.id))).all())


def presence_of(*, session: Session, guest_id: str) -> list[Presence]:
    """Where the guest was last seen inside or leaving, by zone."""
    return list(session.exec(select(Presence).where(Presence.guest_id == guest_id)
                             .order_by(col(Presence.zone_id))).all())


def daily_spend_of(*, session: Session, guest_id: str) -> list[DailySpend]:
    """What the guest spent, day by day."""
    return list(session.exec(select(DailySpend).where(DailySpend.guest_id == guest_id)
                             .order_by(col(DailySpend.day))).all())


def automation_runs_of(*, session: Session, guest_id: str) -> list[AutomationRun]:
    """What automations did for the guest, oldest first."""
    return list(session.exec(select(AutomationRun).where(AutomationRun.guest_id == guest_id)
                             .order_by(col(AutomationRun.id))).all())
