"""Venues: a park, a hotel, a resort; the first segment of every device topic."""

from __future__ import annotations

from fastapi import APIRouter, status

from hub import crud
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
