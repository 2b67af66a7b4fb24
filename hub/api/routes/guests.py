"""Guests: the one identity behind every band, key, ticket and reservation."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from hub import crud
from hub.api.deps import Limit, Offset, SessionDep
from hub.models import Credential, Entitlement, Guest, SpendingPolicy, new_id
from hub.schemas import (
    CredentialPublic,
    EntitlementPublic,
    GuestCreate,
    GuestPublic,
    GuestUpdate,
    SpendingPolicyPublic,
    SpendingPolicyUpdate,
)
from hub.security import hash_secret

router = APIRouter(prefix="/guests", tags=["guests"])


@router.get("", response_model=list[GuestPublic])
def list_guests(session: SessionDep, q: str | None = None, limit: Limit = 100,
                offset: Offset = 0) -> list[Guest]:
    """Guests, optionally searched by name, display name or email."""
    return crud.list_guests(session, q=q, limit=limit, offset=offset)


@router.post("", response_model=GuestPublic, status_code=status.HTTP_201_CREATED)
def create_guest(body: GuestCreate, session: SessionDep) -> Guest:
    data = body.model_dump()
    data["id"] = data["id"] or new_id()
    return crud.add(session, Guest.model_validate(data))


@router.get("/{guest_id}", response_model=GuestPublic)
def get_guest(guest_id: str, session: SessionDep) -> Guest:
    return crud.get(session, Guest, guest_id)


@router.patch("/{guest_id}", response_model=GuestPublic)
def update_guest(guest_id: str, body: GuestUpdate, session: SessionDep) -> Guest:
    guest = crud.get(session, Guest, guest_id)
    return crud.update(session, guest, body.model_dump(exclude_unset=True))


@router.get("/{guest_id}/credentials", response_model=list[CredentialPublic])
def guest_credentials(guest_id: str, session: SessionDep, limit: Limit = 100,
                      offset: Offset = 0) -> list[Credential]:
    crud.get(session, Guest, guest_id)
    return crud.list_credentials(session, guest_id=guest_id, kind=None, identifier=None,
                                 limit=limit, offset=offset)


@router.get("/{guest_id}/entitlements", response_model=list[EntitlementPublic])
def guest_entitlements(guest_id: str, session: SessionDep, limit: Limit = 100,
                       offset: Offset = 0) -> list[Entitlement]:
    crud.get(session, Guest, guest_id)
    return crud.list_entitlements(session, guest_id=guest_id, kind=None, limit=limit,
                                  offset=offset)


@router.get("/{guest_id}/spending-policy", response_model=SpendingPolicyPublic)
def get_spending_policy(guest_id: str, session: SessionDep) -> SpendingPolicyPublic:
    """How the guest pays: who pays for them, PIN threshold, daily limit, on/off."""
    crud.get(session, Guest, guest_id)
    return _policy_public(session.get(SpendingPolicy, guest_id) or
                          SpendingPolicy(guest_id=guest_id, payer_guest_id=guest_id))


@router.put("/{guest_id}/spending-policy", response_model=SpendingPolicyPublic)
def set_spending_policy(guest_id: str, body: SpendingPolicyUpdate, session: SessionDep,
                        request: Request) -> SpendingPolicyPublic:
    """Set the policy; a party lead links a member by naming themself as the payer."""
    crud.get(session, Guest, guest_id)
    payer = body.payer_guest_id or guest_id
    crud.require(session, Guest, payer, "payer_guest_id")
    policy = session.get(SpendingPolicy, guest_id) or SpendingPolicy(guest_id=guest_id,
                                                                     payer_guest_id=payer)
    policy.payer_guest_id = payer
    policy.payment_enabled = body.payment_enabled
    policy.daily_limit = body.daily_limit
    policy.pin_threshold = body.pin_threshold
    if body.pin is not None:
        settings = request.app.state.settings
        policy.pin_hash = hash_secret(body.pin, time_cost=settings.pin_hash_time_cost,
                                      memory_kib=settings.pin_hash_memory_kib)
    session.add(policy)
    if body.reset_pin_lock:
        for credential in crud.list_credentials(session, guest_id=guest_id, kind=None,
                                                identifier=None, limit=500, offset=0):
            crud.update(session, credential, {"pin_failures": 0})
    session.flush()
    return _policy_public(policy)


def _policy_public(policy: SpendingPolicy) -> SpendingPolicyPublic:
    return SpendingPolicyPublic(guest_id=policy.guest_id, payer_guest_id=policy.payer_guest_id,
                                payment_enabled=policy.payment_enabled,
                                daily_limit=policy.daily_limit,
                                pin_threshold=policy.pin_threshold,
                                has_pin=policy.pin_hash is not None)
