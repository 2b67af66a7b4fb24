"""Credentials: wristbands and phone keys, each bound to one guest; lost takes effect at once."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, BackgroundTasks, Request, status

from hub import crud, keyring, phone_keys
from hub.api.deps import Limit, Offset, SessionDep
from hub.models import (
    Credential,
    CredentialKind,
    CredentialStatus,
    EntitlementStatus,
    Guest,
    Zone,
    utcnow,
)
from hub.presented import Trust, issuer
from hub.schemas import (
    CredentialCreate,
    CredentialPublic,
    CredentialUpdate,
    PhoneKeyIssued,
    PhoneKeyRequest,
)

router = APIRouter(prefix="/credentials", tags=["credentials"])


@router.get("", response_model=list[CredentialPublic])
def list_credentials(session: SessionDep, guest_id: str | None = None,
                     kind: CredentialKind | None = None, identifier: str | None = None,
                     limit: Limit = 100, offset: Offset = 0) -> list[Credential]:
    if identifier and kind is CredentialKind.WRISTBAND:
        identifier = identifier.upper()  # UIDs are stored in upper-case hex
    return crud.list_credentials(session, guest_id=guest_id, kind=kind, identifier=identifier,
                                 limit=limit, offset=offset)


@router.post("", response_model=CredentialPublic, status_code=status.HTTP_201_CREATED)
def issue_credential(body: CredentialCreate, session: SessionDep) -> Credential:
    """Bind a wristband (by its UID) or a new phone key to a guest."""
    crud.require(session, Guest, body.guest_id, "guest_id")
    data = body.model_dump()
    if data["identifier"] is None:
        data["identifier"] = f"pk-{secrets.token_hex(12)}"
    return crud.add(session, Credential.model_validate(data))


@router.get("/{credential_id}", response_model=CredentialPublic)
def get_credential(credential_id: str, session: SessionDep) -> Credential:
    return crud.get(session, Credential, credential_id)


@router.patch("/{credential_id}", response_model=CredentialPublic)
def update_credential(credential_id: str, body: CredentialUpdate, session: SessionDep,
                      request: Request, tasks: BackgroundTasks) -> Credential:
    """Change a credential's status (lost, suspended, revoked, active) or label.

    A phone key's new status reaches offline locks in the retained revocation list.
    """
    credential = crud.get(session, Credential, credential_id)
    changes = body.model_dump(exclude_unset=True)
    if "status" in changes and changes["status"] != credential.status:
        changes["status_changed_at"] = utcnow()
    updated = crud.update(session, credential, changes)
    if updated.key_jti is not None and "status" in changes:
        session.flush()
        messages = keyring.key_material(session, Trust())
        bridge = request.app.state.bridge
        if bridge is not None:
            for topic, payload in messages:
                tasks.add_task(bridge.publish, topic, payload, retain=True)
    return updated


@router.post("/{credential_id}/phone-key", response_model=PhoneKeyIssued,
             status_code=status.HTTP_201_CREATED)
def issue_phone_key(credential_id: str, body: PhoneKeyRequest, session: SessionDep,
                    request: Request) -> PhoneKeyIssued:
    """Sign a phone key for the guest's current stays and tickets, bound to the phone's key."""
    credential = crud.get(session, Credential, credential_id)
    if credential.kind is not CredentialKind.PHONE_KEY:
        raise crud.Invalid(f"credential {credential_id!r} is a {credential.kind.value}")
    if credential.status is not CredentialStatus.ACTIVE:
        raise crud.Conflict(f"credential {credential_id!r} is {credential.status.value}")
    now = utcnow()
    grants = [e for e in crud.entitlements_of(session, guest_id=credential.guest_id)
              if e.status is EntitlementStatus.ACTIVE and e.valid_until > now]
    if not grants:
        raise crud.Conflict("the guest holds no current ticket or stay to put in a key")
    zones = sorted({z for e in grants for z in e.zone_ids})
    nbf, exp = min(e.valid_from for e in grants), max(e.valid_until for e in grants)
    venue = crud.get(session, Zone, zones[0]).venue_id
    keys = request.app.state.signing_keys
    try:
        token, jti = phone_keys.issue_phone_key(
            keys, now=now, issuer=issuer(venue), venue=venue, guest_id=credential.guest_id,
            credential_id=credential.id, zones=zones, nbf=nbf, exp=exp,
            phone_jwk=body.phone_jwk)
    except ValueError as exc:
        raise crud.Invalid(str(exc)) from exc
    crud.update(session, credential, {"key_jti": jti})
    return PhoneKeyIssued(token=token, jti=jti, kid=phone_keys.current_signing_key(keys, now).kid,
                          zones=zones, nbf=nbf, exp=exp)
