"""What a guest controls: preferences, consents, a copy of their data; erasure by an admin.

The guest reaches their own only; the front desk reaches every guest's; auditors
read. Changes are audited by the names of the fields changed, not their values:
the audit log is append-only, and a diet or a heart-rate threshold written there
would outlive the guest's erasure.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Request
from sqlmodel import Session

from hub import keyring, privacy
from hub.api.deps import (
    ADMIN,
    GUEST,
    GUEST_DATA_READERS,
    STAFF,
    AuditDep,
    Principal,
    SessionDep,
    ensure_own,
    get_publisher,
    require_roles,
)
from hub.models import ConsentPurpose, Guest, GuestPreferences, utcnow
from hub.schemas import (
    ConsentPublic,
    ConsentState,
    ConsentUpdate,
    ErasureReport,
    GuestExport,
    PreferencesPublic,
    PreferencesUpdate,
)
from hub.store import guests, rows, staff

router = APIRouter(prefix="/guests", tags=["profile"])

OwnReader = Annotated[Principal, require_roles(*GUEST_DATA_READERS, GUEST)]
OwnWriter = Annotated[Principal, require_roles(ADMIN, STAFF, GUEST)]
# A copy of everything is for the guest and the front desk, not for auditors.
OwnCopy = Annotated[Principal, require_roles(ADMIN, STAFF, GUEST)]


def _own_guest(session: Session, caller: Principal, guest_id: str) -> Guest:
    """The guest; for a guest's token, 403 before anything else (no oracle)."""
    ensure_own(caller, guest_id)
    return rows.get(session=session, model=Guest, key=guest_id)


def _preferences_public(guest_id: str, row: GuestPreferences | None) -> PreferencesPublic:
    """The profile as the API shows it; an empty one when never set."""
    if row is None:
        return PreferencesPublic(guest_id=guest_id)
    return PreferencesPublic.model_validate(row.model_dump())


@router.get("/{guest_id}/preferences", response_model=PreferencesPublic)
def get_preferences(guest_id: str, session: SessionDep, caller: OwnReader) -> PreferencesPublic:
    """The guest's profile; empty (every field null) until set."""
    _own_guest(session, caller, guest_id)
    return _preferences_public(guest_id, rows.find(session=session, model=GuestPreferences,
                                                   key=guest_id))


@router.put("/{guest_id}/preferences", response_model=PreferencesPublic)
def set_preferences(guest_id: str, body: PreferencesUpdate, session: SessionDep,
                    caller: OwnWriter, audit: AuditDep) -> PreferencesPublic:
    """Replace the profile: an omitted field is cleared. Used only with consent."""
    _own_guest(session, caller, guest_id)
    row, changed = privacy.set_preferences(session, guest_id=guest_id, values=body.model_dump(),
                                           now=utcnow())
    audit.record("preferences.set", f"guest:{guest_id}", {"changed": changed})
    return _preferences_public(guest_id, row)


@router.get("/{guest_id}/consent", response_model=ConsentState)
def get_consent(guest_id: str, session: SessionDep, caller: OwnReader) -> ConsentState:
    """Each purpose (not granted until the guest says yes) and every change of them."""
    _own_guest(session, caller, guest_id)
    return ConsentState.model_validate(privacy.consent_state(session, guest_id=guest_id),
                                       from_attributes=True)


@router.put("/{guest_id}/consent/{purpose}", response_model=ConsentPublic)
def set_consent(guest_id: str, purpose: ConsentPurpose, body: ConsentUpdate,
                session: SessionDep, caller: OwnWriter, audit: AuditDep) -> ConsentPublic:
    """Grant or withdraw one purpose; it takes effect at the next event."""
    _own_guest(session, caller, guest_id)
    row, changed = privacy.set_consent(session, guest_id=guest_id, purpose=purpose,
                                       granted=body.granted, actor=caller.name, now=utcnow())
    audit.record("consent.set", f"guest:{guest_id}",
                 {"purpose": purpose, "granted": body.granted, "changed": changed})
    return ConsentPublic(purpose=purpose, granted=row.granted, changed_at=row.changed_at)


@router.get("/{guest_id}/export", response_model=GuestExport)
def export_guest(guest_id: str, session: SessionDep, caller: OwnCopy) -> GuestExport:
    """Everything the hub holds about the guest, as one JSON document (no secrets)."""
    ensure_own(caller, guest_id)
    return GuestExport.model_validate(privacy.export_guest(session, guest_id=guest_id,
                                                           now=utcnow()), from_attributes=True)


@router.post("/{guest_id}/erase", response_model=ErasureReport,
             dependencies=[require_roles(ADMIN)])
def erase_guest(guest_id: str, session: SessionDep, request: Request, tasks: BackgroundTasks,
                audit: AuditDep) -> ErasureReport:
    """Erase the guest's personal data and revoke their credentials; the books stay whole.

    Irreversible. Revoked phone keys reach offline locks in the retained revocation list.
    """
    erasure = privacy.erase_guest(session, guest_id=guest_id, now=utcnow())
    staff.revoke_tokens(session=session, subject=staff.token_subject("guest", guest_id))
    # Counts and the pseudonym only: the audit log must not keep what was just erased.
    audit.record("guest.erase", f"guest:{guest_id}", erasure.audit_detail())
    publisher = get_publisher(request)
    if publisher is not None and erasure.credentials_revoked:
        phone_keys = [c for c in guests.list_credentials(session=session, guest_id=guest_id,
                                                         kind=None,
                                                         identifier=None, limit=500, offset=0)
                      if c.key_jti is not None]
        if phone_keys:
            for topic, payload in keyring.key_material(session, request.app.state.signing_keys,
                                                       utcnow()):
                tasks.add_task(publisher.publish, topic, payload, retain=True)
    return ErasureReport.model_validate(erasure, from_attributes=True)

