"""Credentials: wristbands and phone keys, each bound to one guest; lost takes effect at once."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, status
from sqlmodel import Session

from hub import broker_logins, phone_keys
from hub.api.deps import (
    ADMIN,
    GUEST,
    GUEST_DATA_READERS,
    STAFF,
    AuditDep,
    Limit,
    Offset,
    Principal,
    SessionDep,
    ensure_own,
    require_roles,
)
from hub.api.key_material import publish_key_material
from hub.broker_auth import guest_username
from hub.models import (
    Credential,
    CredentialKind,
    CredentialStatus,
    EntitlementStatus,
    Guest,
    Zone,
    utcnow,
)
from hub.presented import issuer
from hub.schemas import (
    CredentialCreate,
    CredentialPublic,
    CredentialUpdate,
    PhoneKeyIssued,
    PhoneKeyRequest,
)
from hub.store import errors, guests, rows, staff

router = APIRouter(prefix="/credentials", tags=["credentials"])


def _own_credential(session: Session, caller: Principal, credential_id: str) -> Credential:
    """The credential; for a guest, 403 unless it is theirs (existing or not: no oracle).

    An identifier where the id belongs (``pk-guest-01`` for ``phone-guest-01``) is a 404
    that names the id, when the caller may see that credential: a guest's own only, so it
    tells nothing about anyone else's.
    """
    credential = rows.find(session=session, model=Credential, key=credential_id)
    if credential is None:
        _id_for_identifier(session, caller, credential_id)
    if caller.typ == "guest":
        ensure_own(caller, credential.guest_id if credential else None)
    return credential if credential is not None else rows.get(
        session=session, model=Credential, key=credential_id)


def _id_for_identifier(session: Session, caller: Principal, text: str) -> None:
    """404 naming the credential whose identifier (UID or phone key id) ``text`` is, among
    those the caller may see; nothing when there is none."""
    for identifier in dict.fromkeys((text, text.upper())):
        found = guests.list_credentials(session=session, guest_id=caller.guest_id, kind=None,
                                        identifier=identifier, limit=1, offset=0)
        if found:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail=f"no credential has the id {text!r}: that is the identifier of "
                       f"credential {found[0].id!r}; use /credentials/{found[0].id}")


@router.get("", response_model=list[CredentialPublic],
            dependencies=[require_roles(*GUEST_DATA_READERS)])
def list_credentials(session: SessionDep, guest_id: str | None = None,
                     kind: CredentialKind | None = None, identifier: str | None = None,
                     limit: Limit = 100, offset: Offset = 0) -> list[Credential]:
    if identifier and kind is CredentialKind.WRISTBAND:
        identifier = identifier.upper()  # UIDs are stored in upper-case hex
    return guests.list_credentials(session=session, guest_id=guest_id, kind=kind,
                                   identifier=identifier,
                                   limit=limit, offset=offset)


@router.post("", response_model=CredentialPublic, status_code=status.HTTP_201_CREATED,
             dependencies=[require_roles(ADMIN, STAFF)])
def issue_credential(body: CredentialCreate, session: SessionDep, audit: AuditDep) -> Credential:
    """Bind a wristband (by its UID) or a new phone key to a guest."""
    rows.require(session=session, model=Guest, key=body.guest_id, field="guest_id")
    data = body.model_dump()
    if data["identifier"] is None:
        data["identifier"] = f"pk-{secrets.token_hex(12)}"
    credential = rows.add(session=session, row=Credential.model_validate(data))
    audit.record("credential.create", f"credential:{credential.id}", data)
    return credential


@router.get("/{credential_id}", response_model=CredentialPublic)
def get_credential(credential_id: str, session: SessionDep,
                   caller: Annotated[Principal, require_roles(*GUEST_DATA_READERS, GUEST)]
                   ) -> Credential:
    return _own_credential(session, caller, credential_id)


@router.patch("/{credential_id}", response_model=CredentialPublic)
def update_credential(credential_id: str, body: CredentialUpdate, session: SessionDep,
                      request: Request, tasks: BackgroundTasks,
                      caller: Annotated[Principal, require_roles(ADMIN, STAFF, GUEST)],
                      audit: AuditDep) -> Credential:
    """Change a credential's status (lost, suspended, revoked, active) or label.

    A guest may only report their own credential lost (``{"status": "lost"}``).
    A phone key's new status reaches offline locks in the retained revocation list.
    """
    credential = _own_credential(session, caller, credential_id)
    changes = body.model_dump(exclude_unset=True)
    if caller.typ == "guest" and changes != {"status": CredentialStatus.LOST}:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail='a guest may only report a credential lost: {"status": "lost"}')
    if "status" in changes and changes["status"] != credential.status:
        changes["status_changed_at"] = utcnow()
    updated = rows.update(session=session, row=credential, changes=changes)
    audit.record("credential.update", f"credential:{credential_id}", changes)
    if updated.kind is CredentialKind.PHONE_KEY and changes.get("status") in (
            CredentialStatus.LOST, CredentialStatus.REVOKED):
        # A lost phone holds the guest's app, its token and its broker login: both stop now
        # (the guest's new phone asks for a new login).
        staff.revoke_tokens(session=session, subject=staff.token_subject("guest", updated.guest_id))
        broker_logins.reissue(session, guest_username(updated.guest_id))
    if updated.key_jti is not None and "status" in changes:
        publish_key_material(session, request, tasks)
    return updated


@router.post("/{credential_id}/phone-key", response_model=PhoneKeyIssued,
             status_code=status.HTTP_201_CREATED)
def issue_phone_key(credential_id: str, body: PhoneKeyRequest, session: SessionDep,
                    request: Request, tasks: BackgroundTasks,
                    caller: Annotated[Principal, require_roles(ADMIN, STAFF, GUEST)],
                    audit: AuditDep) -> PhoneKeyIssued:
    """Sign a phone key for the guest's current stays and tickets, bound to the phone's key.

    The guest's own app may ask for its own phone key: it holds the phone's private key.
    """
    credential = _own_credential(session, caller, credential_id)
    if credential.kind is not CredentialKind.PHONE_KEY:
        raise errors.Invalid(f"credential {credential_id!r} is a {credential.kind.value}")
    if credential.status is not CredentialStatus.ACTIVE:
        raise errors.Conflict(f"credential {credential_id!r} is {credential.status.value}")
    now = utcnow()
    grants = [e for e in guests.entitlements_of(session=session, guest_id=credential.guest_id)
              if e.status is EntitlementStatus.ACTIVE and e.valid_until > now]
    if not grants:
        raise errors.Conflict("the guest holds no current ticket or stay to put in a key")
    # A key is signed for one venue (its iss and aud): it carries that venue's zones only,
    # or a lock elsewhere would be told of zones its venue's key can never open.
    at: dict[str, set[str]] = {}
    for zone_id in {z for e in grants for z in e.zone_ids}:
        at.setdefault(rows.get(session=session, model=Zone, key=zone_id).venue_id,
                      set()).add(zone_id)
    venue = body.venue or min(at, key=lambda v: (-len(at[v]), v))
    if venue not in at:
        raise errors.Conflict(f"the guest holds no current ticket or stay at venue {venue!r}")
    zones = sorted(at[venue])
    grants = [e for e in grants if at[venue].intersection(e.zone_ids)]
    nbf, exp = min(e.valid_from for e in grants), max(e.valid_until for e in grants)
    keys = request.app.state.signing_keys
    try:
        token, jti = phone_keys.issue_phone_key(
            keys, now=now, issuer=issuer(venue), venue=venue, guest_id=credential.guest_id,
            credential_id=credential.id, zones=zones, nbf=nbf, exp=exp,
            phone_jwk=body.phone_jwk)
    except ValueError as exc:
        raise errors.Invalid(str(exc)) from exc
    superseded = credential.key_jti
    guests.record_phone_key(session=session, credential=credential, jti=jti, expires_at=exp,
                            now=now)
    if superseded is not None:  # locks deciding offline must learn the old key is void
        publish_key_material(session, request, tasks)
    kid = phone_keys.current_signing_key(keys, now).kid
    # The key's id and reach; never the token itself.
    audit.record("phone_key.issue", f"credential:{credential_id}",
                 {"jti": jti, "kid": kid, "zones": zones, "nbf": nbf, "exp": exp})
    return PhoneKeyIssued(token=token, jti=jti, kid=kid, zones=zones, nbf=nbf, exp=exp)
