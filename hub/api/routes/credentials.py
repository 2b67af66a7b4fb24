"""Credentials: wristbands and phone keys, each bound to one guest; lost takes effect at once."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, status

from hub import crud
from hub.api.deps import Limit, Offset, SessionDep
from hub.models import Credential, CredentialKind, Guest, utcnow
from hub.schemas import CredentialCreate, CredentialPublic, CredentialUpdate

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
def update_credential(credential_id: str, body: CredentialUpdate,
                      session: SessionDep) -> Credential:
    """Change a credential's status (lost, suspended, revoked, active) or label."""
    credential = crud.get(session, Credential, credential_id)
    changes = body.model_dump(exclude_unset=True)
    if "status" in changes and changes["status"] != credential.status:
        changes["status_changed_at"] = utcnow()
    return crud.update(session, credential, changes)
