"""Guests: the one identity behind every band, key, ticket and reservation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, Response, status

from devices.topics import ROOT
from hub import broker_logins
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
from hub.broker_auth import guest_password, guest_username
from hub.models import Credential, Entitlement, Guest, SpendingPolicy, new_id, utcnow
from hub.schemas import (
    BrokerLogin,
    CredentialPublic,
    EntitlementPublic,
    GuestCreate,
    GuestPublic,
    GuestUpdate,
    SpendingPolicyPublic,
    SpendingPolicyUpdate,
    TokenIssued,
)
from hub.security import GUEST_ROLE, hash_secret, issue_api_token
from hub.store import guests, rows, staff

router = APIRouter(prefix="/guests", tags=["guests"])

# The front desk, and the guest themself for their own data.
OwnReader = Annotated[Principal, require_roles(*GUEST_DATA_READERS, GUEST)]


@router.get("", response_model=list[GuestPublic],
            dependencies=[require_roles(*GUEST_DATA_READERS)])
def list_guests(session: SessionDep, q: str | None = None, limit: Limit = 100,
                offset: Offset = 0) -> list[Guest]:
    """Guests, optionally searched by name, display name or email."""
    return guests.list_guests(session=session, q=q, limit=limit, offset=offset)


@router.post("", response_model=GuestPublic, status_code=status.HTTP_201_CREATED,
             dependencies=[require_roles(ADMIN, STAFF)])
def create_guest(body: GuestCreate, session: SessionDep, audit: AuditDep) -> Guest:
    data = body.model_dump()
    data["id"] = data["id"] or new_id()
    guest = rows.add(session=session, row=Guest.model_validate(data))
    audit.record("guest.create", f"guest:{guest.id}", data)
    return guest


@router.get("/{guest_id}", response_model=GuestPublic)
def get_guest(guest_id: str, session: SessionDep, caller: OwnReader) -> Guest:
    ensure_own(caller, guest_id)
    return rows.get(session=session, model=Guest, key=guest_id)


@router.patch("/{guest_id}", response_model=GuestPublic,
              dependencies=[require_roles(ADMIN, STAFF)])
def update_guest(guest_id: str, body: GuestUpdate, session: SessionDep,
                 audit: AuditDep) -> Guest:
    guest = rows.get(session=session, model=Guest, key=guest_id)
    changes = body.model_dump(exclude_unset=True)
    updated = rows.update(session=session, row=guest, changes=changes)
    audit.record("guest.update", f"guest:{guest_id}", changes)
    return updated


@router.get("/{guest_id}/credentials", response_model=list[CredentialPublic])
def guest_credentials(guest_id: str, session: SessionDep, caller: OwnReader, limit: Limit = 100,
                      offset: Offset = 0) -> list[Credential]:
    ensure_own(caller, guest_id)
    rows.get(session=session, model=Guest, key=guest_id)
    return guests.list_credentials(session=session, guest_id=guest_id, kind=None, identifier=None,
                                   limit=limit, offset=offset)


@router.get("/{guest_id}/entitlements", response_model=list[EntitlementPublic])
def guest_entitlements(guest_id: str, session: SessionDep, caller: OwnReader, limit: Limit = 100,
                       offset: Offset = 0) -> list[Entitlement]:
    ensure_own(caller, guest_id)
    rows.get(session=session, model=Guest, key=guest_id)
    return guests.list_entitlements(session=session, guest_id=guest_id, kind=None, limit=limit,
                                    offset=offset)


@router.get("/{guest_id}/spending-policy", response_model=SpendingPolicyPublic)
def get_spending_policy(guest_id: str, session: SessionDep, request: Request,
                        caller: OwnReader) -> SpendingPolicyPublic:
    """How the guest pays: who pays for them, PIN threshold, daily limit, on/off."""
    ensure_own(caller, guest_id)
    rows.get(session=session, model=Guest, key=guest_id)
    return _policy_public(rows.find(session=session, model=SpendingPolicy, key=guest_id) or
                          SpendingPolicy(guest_id=guest_id, payer_guest_id=guest_id),
                          session, request)


@router.put("/{guest_id}/spending-policy", response_model=SpendingPolicyPublic)
def set_spending_policy(
    guest_id: str, body: SpendingPolicyUpdate, session: SessionDep, request: Request,
    caller: Annotated[Principal, require_roles(ADMIN, STAFF, GUEST)], audit: AuditDep,
) -> SpendingPolicyPublic:
    """Set the policy; a party lead links a member by naming themself as the payer.

    A guest may set their own policy, but not who pays for them, and not at all while
    a party lead pays for them (the lead's limits would be theirs to lift): staff do both.
    A wrong-PIN lock is lifted by staff only, and a guest cannot set a new PIN while
    locked (that would lift it by the back door). Fields left out keep their values.
    """
    ensure_own(caller, guest_id)
    rows.get(session=session, model=Guest, key=guest_id)
    policy = rows.find(session=session, model=SpendingPolicy, key=guest_id)
    payer = body.payer_guest_id or guest_id
    if caller.typ == "guest":
        current = policy.payer_guest_id if policy else guest_id
        if current != guest_id:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail="a party lead pays for this guest: ask the staff")
        if "payer_guest_id" in body.model_fields_set and payer != current:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail="only staff may set payer_guest_id")
        locked = guests.pin_failures_of(session=session, guest_id=guest_id) \
            >= request.app.state.settings.pin_max_failures
        if body.reset_pin_lock or (locked and body.pin is not None):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail="a PIN lock is lifted by staff: please see the front desk")
    given = body.model_fields_set
    if policy is not None and "payer_guest_id" not in given:
        payer = policy.payer_guest_id
    rows.require(session=session, model=Guest, key=payer, field="payer_guest_id")
    fresh = policy is None
    policy = policy or SpendingPolicy(guest_id=guest_id, payer_guest_id=payer)
    policy.payer_guest_id = payer
    # Fields left out keep their values ({"reset_pin_lock": true} alone changes nothing else).
    for name in ("payment_enabled", "daily_limit", "pin_threshold"):
        if fresh or name in given:
            setattr(policy, name, getattr(body, name))
    if body.pin is not None:
        settings = request.app.state.settings
        policy.pin_hash = hash_secret(body.pin, time_cost=settings.pin_hash_time_cost,
                                      memory_kib=settings.pin_hash_memory_kib)
    session.add(policy)
    if body.reset_pin_lock:
        guests.clear_pin_failures(session=session, guest_id=guest_id)
    session.flush()
    # Never the PIN itself: only that it changed.
    audit.record("spending_policy.set", f"guest:{guest_id}",
                 {**body.model_dump(exclude={"pin"}), "payer_guest_id": payer,
                  "pin_changed": body.pin is not None})
    return _policy_public(policy, session, request)


@router.post("/{guest_id}/token", response_model=TokenIssued,
             status_code=status.HTTP_201_CREATED, dependencies=[require_roles(ADMIN, STAFF)])
def issue_guest_token(guest_id: str, session: SessionDep, request: Request,
                      audit: AuditDep) -> TokenIssued:
    """A token for the guest's own app (e.g. at check-in): it reaches their data only."""
    rows.get(session=session, model=Guest, key=guest_id)
    issued = issue_api_token(request.app.state.token_key, subject=guest_id, roles=[GUEST_ROLE],
                             typ="guest", minutes=request.app.state.settings.api_token_minutes,
                             now=utcnow(), version=staff.token_version(
                                 session=session, subject=staff.token_subject("guest", guest_id)))
    audit.record("guest.token", f"guest:{guest_id}",
                 {"jti": issued.jti, "expires_in": issued.expires_in})
    return TokenIssued(access_token=issued.token, expires_in=issued.expires_in,
                       roles=[GUEST_ROLE])


@router.post("/{guest_id}/broker-login", response_model=BrokerLogin)
def guest_broker_login(guest_id: str, session: SessionDep, request: Request,
                       caller: Annotated[Principal, require_roles(ADMIN, STAFF, GUEST)],
                       audit: AuditDep) -> BrokerLogin:
    """The broker login of the guest's own app (their receipts and notices live only).

    Derived from the hub's broker key: the same every time until it is revoked (DELETE, or
    a phone key reported lost), valid on the embedded broker and in the Mosquitto files of
    ``hub provision mosquitto``."""
    ensure_own(caller, guest_id)
    guest = rows.get(session=session, model=Guest, key=guest_id)
    key = request.app.state.broker_key
    if key is None:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail="this hub runs without a broker key: no broker logins")
    username = guest_username(guest.id)
    generation = broker_logins.generation_of(session, username) or 0  # guests' never revoked
    audit.record("guest.broker_login", f"guest:{guest_id}", {"generation": generation})
    return BrokerLogin(username=username, password=guest_password(key, guest.id, generation),
                       topic=f"{ROOT}/+/guest/{guest.id}/notifications")


@router.delete("/{guest_id}/broker-login", status_code=status.HTTP_204_NO_CONTENT)
def revoke_guest_broker_login(guest_id: str, session: SessionDep,
                              caller: Annotated[Principal, require_roles(ADMIN, STAFF, GUEST)],
                              audit: AuditDep) -> Response:
    """Stop the guest's app's broker login and API tokens (a phone given away): the
    embedded broker cuts it off within a second; staff (or the guest with a new token)
    then get a new login with POST."""
    ensure_own(caller, guest_id)
    guest = rows.get(session=session, model=Guest, key=guest_id)
    generation = broker_logins.reissue(session, guest_username(guest.id))
    # The phone given away holds the app's API token too, which would fetch the new login:
    # it stops as well (the guest signs in again on their new phone).
    staff.revoke_tokens(session=session, subject=staff.token_subject("guest", guest.id))
    audit.record("guest.broker_login.revoke", f"guest:{guest_id}", {"generation": generation})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _policy_public(policy: SpendingPolicy, session: SessionDep,
                   request: Request) -> SpendingPolicyPublic:
    failures = guests.pin_failures_of(session=session, guest_id=policy.guest_id)
    return SpendingPolicyPublic(guest_id=policy.guest_id, payer_guest_id=policy.payer_guest_id,
                                payment_enabled=policy.payment_enabled,
                                daily_limit=policy.daily_limit,
                                pin_threshold=policy.pin_threshold,
                                has_pin=policy.pin_hash is not None, pin_failures=failures,
                                pin_locked=failures >= request.app.state.settings.pin_max_failures)
