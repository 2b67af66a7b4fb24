"""Venues: a park, a hotel, a resort; the first segment of every device topic."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, Response, status

from devices.topics import keys_topic
from hub import keyring, schemas
from hub.api.deps import (
    ADMIN,
    INTEGRATOR,
    SETUP_READERS,
    AuditDep,
    Limit,
    Offset,
    Principal,
    SessionDep,
    get_publisher,
    publish_after_commit,
    require_roles,
)
from hub.api.key_material import publish_key_material
from hub.models import Venue, utcnow
from hub.schemas import VenueCreate, VenueFolioPolicy, VenuePolicy, VenuePublic, VenueUpdate
from hub.store import devices, errors, rows

router = APIRouter(prefix="/venues", tags=["venues"])


@router.get("", response_model=list[VenuePublic],
            dependencies=[require_roles(*SETUP_READERS)])
def list_venues(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> list[Venue]:
    return devices.list_venues(session=session, limit=limit, offset=offset)


@router.post("", response_model=VenuePublic, status_code=status.HTTP_201_CREATED)
def create_venue(body: VenueCreate, session: SessionDep, audit: AuditDep, request: Request,
                 tasks: BackgroundTasks,
                 caller: Annotated[Principal, require_roles(ADMIN, INTEGRATOR)]) -> Venue:
    if body.allow_plain_uid and ADMIN not in caller.roles:
        # The security policy is the admins' (PUT .../security-policy): not a side door.
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="only an admin may create a venue that accepts bare UIDs")
    if (reserved := schemas.reserved_venue_id(body.id)) is not None:
        audit.refused("venue.create_refused", f"venue:{body.id}", {"why": "reserved"})
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"id: {reserved}")
    venue = rows.add(session=session, row=Venue.model_validate(body.model_dump()))
    audit.record("venue.create", f"venue:{venue.id}", body.model_dump())
    publish_key_material(session, request, tasks)  # its locks need it before any change
    return venue


@router.get("/{venue_id}", response_model=VenuePublic,
            dependencies=[require_roles(*SETUP_READERS)])
def get_venue(venue_id: str, session: SessionDep) -> Venue:
    return rows.live(session=session, model=Venue, key=venue_id)


@router.patch("/{venue_id}", response_model=VenuePublic, dependencies=[require_roles(ADMIN)])
def update_venue(venue_id: str, body: VenueUpdate, session: SessionDep,
                 audit: AuditDep) -> Venue:
    """Rename, re-clock or close a venue (admins). Closing it (``enabled: false``) denies
    every tap and payment there and refuses its devices at the embedded broker within a
    second; opening it again lets them back in."""
    changes = body.model_dump(exclude_unset=True)
    venue = rows.update(session=session, row=rows.live(session=session, model=Venue, key=venue_id),
                        changes=changes)
    audit.record("venue.update", f"venue:{venue_id}", changes)
    return venue


@router.delete("/{venue_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[require_roles(ADMIN)],
               responses={409: {"description": "The venue still has devices"}})
def delete_venue(venue_id: str, session: SessionDep, audit: AuditDep, request: Request,
                 tasks: BackgroundTasks) -> Response:
    """Delete a venue whose devices are all deleted: it leaves the lists, its key material
    is no longer published, and its id is never reused (its ledger and journey name it)."""
    venue = rows.live(session=session, model=Venue, key=venue_id)
    left = devices.count_live_devices(session=session, venue_id=venue_id)
    if left:
        raise errors.Conflict(f"venue {venue_id!r} still has {left} device(s): delete them "
                            f"first (DELETE /devices/{{id}})")
    rows.update(session=session, row=venue, changes={"deleted_at": utcnow()})
    audit.record("venue.delete", f"venue:{venue_id}", {})
    # What is retained for it goes: an empty retained message clears.
    publish_after_commit(tasks, get_publisher(request),
                         [(keys_topic(venue_id, name), b"") for name in ("jwks", "revocations")],
                         retain=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/{venue_id}/security-policy", response_model=VenuePublic,
            dependencies=[require_roles(ADMIN)])
def set_security_policy(venue_id: str, body: VenuePolicy, session: SessionDep,
                        audit: AuditDep) -> Venue:
    """Whether the venue accepts copyable credentials (legacy readers); admins only."""
    venue = rows.update(session=session, row=rows.live(session=session, model=Venue, key=venue_id),
                        changes=body.model_dump())
    audit.record("venue.security_policy", f"venue:{venue_id}", body.model_dump())
    return venue


@router.put("/{venue_id}/folio-policy", response_model=VenuePublic,
            dependencies=[require_roles(ADMIN)])
def set_folio_policy(venue_id: str, body: VenueFolioPolicy, session: SessionDep,
                     audit: AuditDep) -> Venue:
    """What a room folio may owe by default (a folio may set its own); admins only."""
    venue = rows.update(session=session, row=rows.live(session=session, model=Venue, key=venue_id),
                        changes=body.model_dump())
    audit.record("venue.folio_policy", f"venue:{venue_id}", body.model_dump())
    return venue


@router.get("/{venue_id}/jwks")
def venue_jwks(venue_id: str, session: SessionDep, request: Request) -> dict[str, Any]:
    """The public keys phone keys of this venue are signed with (also retained on MQTT).

    Public: locks fetch it to verify phone keys offline. ``keys`` is the JWK Set;
    ``jws`` the same, signed by the hub for this venue (devices/key_material.py), which
    is what a lock must check against its trust anchor before it believes ``keys``.
    """
    rows.live(session=session, model=Venue, key=venue_id)
    return keyring.served(session, request.app.state.signing_keys, venue=venue_id,
                          kind="jwks", now=utcnow())


@router.get("/{venue_id}/revocations")
def venue_revocations(venue_id: str, session: SessionDep, request: Request) -> dict[str, Any]:
    """The revoked phone keys (jti) that locks must refuse, offline too. Public, for locks;
    ``jws`` is the list signed by the hub, as on MQTT."""
    rows.live(session=session, model=Venue, key=venue_id)
    return keyring.served(session, request.app.state.signing_keys, venue=venue_id,
                          kind="revocations", now=utcnow())
