"""Venues: a park, a hotel, a resort; the first segment of every device topic."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, status

from hub import crud, keyring
from hub.api.deps import (
    ADMIN,
    INTEGRATOR,
    SETUP_READERS,
    AuditDep,
    Limit,
    Offset,
    Principal,
    SessionDep,
    require_roles,
)
from hub.models import Venue, utcnow
from hub.schemas import VenueCreate, VenuePolicy, VenuePublic

router = APIRouter(prefix="/venues", tags=["venues"])


@router.get("", response_model=list[VenuePublic],
            dependencies=[require_roles(*SETUP_READERS)])
def list_venues(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> list[Venue]:
    return crud.list_venues(session, limit=limit, offset=offset)


@router.post("", response_model=VenuePublic, status_code=status.HTTP_201_CREATED)
def create_venue(body: VenueCreate, session: SessionDep, audit: AuditDep,
                 caller: Annotated[Principal, require_roles(ADMIN, INTEGRATOR)]) -> Venue:
    if body.allow_plain_uid and ADMIN not in caller.roles:
        # The security policy is the admins' (PUT .../security-policy): not a side door.
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="only an admin may create a venue that accepts bare UIDs")
    venue = crud.add(session, Venue.model_validate(body.model_dump()))
    audit.record("venue.create", f"venue:{venue.id}", body.model_dump())
    return venue


@router.get("/{venue_id}", response_model=VenuePublic,
            dependencies=[require_roles(*SETUP_READERS)])
def get_venue(venue_id: str, session: SessionDep) -> Venue:
    return crud.get(session, Venue, venue_id)


@router.put("/{venue_id}/security-policy", response_model=VenuePublic,
            dependencies=[require_roles(ADMIN)])
def set_security_policy(venue_id: str, body: VenuePolicy, session: SessionDep,
                        audit: AuditDep) -> Venue:
    """Whether the venue accepts copyable credentials (legacy readers); admins only."""
    venue = crud.update(session, crud.get(session, Venue, venue_id), body.model_dump())
    audit.record("venue.security_policy", f"venue:{venue_id}", body.model_dump())
    return venue


@router.get("/{venue_id}/jwks")
def venue_jwks(venue_id: str, session: SessionDep, request: Request) -> dict[str, Any]:
    """The public keys phone keys of this venue are signed with (also retained on MQTT).

    Public: locks fetch it to verify phone keys offline. ``keys`` is the JWK Set;
    ``jws`` the same, signed by the hub for this venue (devices/key_material.py), which
    is what a lock must check against its trust anchor before it believes ``keys``.
    """
    crud.get(session, Venue, venue_id)
    return keyring.served(session, request.app.state.signing_keys, venue=venue_id,
                          kind="jwks", now=utcnow())


@router.get("/{venue_id}/revocations")
def venue_revocations(venue_id: str, session: SessionDep, request: Request) -> dict[str, Any]:
    """The revoked phone keys (jti) that locks must refuse, offline too. Public, for locks;
    ``jws`` is the list signed by the hub, as on MQTT."""
    crud.get(session, Venue, venue_id)
    return keyring.served(session, request.app.state.signing_keys, venue=venue_id,
                          kind="revocations", now=utcnow())
