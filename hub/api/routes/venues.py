"""Venues: a park, a hotel, a resort; the first segment of every device topic."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status

from hub import crud, keyring, phone_keys
from hub.api.deps import Limit, Offset, SessionDep
from hub.models import Venue
from hub.schemas import VenueCreate, VenuePublic

router = APIRouter(prefix="/venues", tags=["venues"])


@router.get("", response_model=list[VenuePublic])
def list_venues(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> list[Venue]:
    return crud.list_venues(session, limit=limit, offset=offset)


@router.post("", response_model=VenuePublic, status_code=status.HTTP_201_CREATED)
def create_venue(body: VenueCreate, session: SessionDep) -> Venue:
    return crud.add(session, Venue.model_validate(body.model_dump()))


@router.get("/{venue_id}", response_model=VenuePublic)
def get_venue(venue_id: str, session: SessionDep) -> Venue:
    return crud.get(session, Venue, venue_id)


@router.get("/{venue_id}/jwks")
def venue_jwks(venue_id: str, session: SessionDep, request: Request) -> dict[str, Any]:
    """The public keys phone keys of this venue are signed with (also retained on MQTT)."""
    crud.get(session, Venue, venue_id)
    return phone_keys.jwks(request.app.state.signing_keys)


@router.get("/{venue_id}/revocations")
def venue_revocations(venue_id: str, session: SessionDep) -> dict[str, object]:
    """The revoked phone keys (jti) that locks must refuse, offline too."""
    crud.get(session, Venue, venue_id)
    return keyring.revocations(session)
