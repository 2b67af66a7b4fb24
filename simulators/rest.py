"""A small typed client for the hub's REST API (only the calls the simulators need).

Responses are validated into models, so a hub that drifts from the API sketch
fails here with a clear message instead of deep inside a scenario.

The API wants a bearer token: give one (``token``), or a staff user's ``username``
and ``password`` and the client logs in (``POST /auth/token``) before its first call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

API_PREFIX = "/api/v1"

CredentialKind = Literal["wristband", "phone_key"]
CredentialStatus = Literal["active", "suspended", "lost", "revoked"]
EntitlementKind = Literal["ticket", "room", "staff"]
AccountKind = Literal["wallet", "folio"]
TopUpMethod = Literal["card", "cash"]


class HubUnreachable(ConnectionError):
    """The REST API did not answer at all (connection refused, DNS, timeout)."""


class HubApiError(RuntimeError):
    """The hub answered a REST call with 4xx/5xx (or with a body outside the sketch)."""

    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {detail}")
        self.method, self.path, self.status, self.detail = method, path, status, detail


class _Out(BaseModel):
    # Extra fields are fine: the sketch lists what we rely on, not all the hub may send.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Guest(_Out):
    id: str
    name: str
    display_name: str | None = None


class Credential(_Out):
    id: str
    guest_id: str
    kind: CredentialKind
    identifier: str
    status: CredentialStatus
    label: str | None = None
    sun: bool = False  # a secure band: its bare UID is refused as a clone


class Entitlement(_Out):
    id: str
    guest_id: str
    kind: EntitlementKind
    zone_ids: list[str]
    valid_from: datetime
    valid_until: datetime
    schedule: list[dict[str, Any]] | None = None
    status: Literal["active", "cancelled"] = "active"


class Device(_Out):
    id: str
    venue_id: str
    kind: str
    name: str
    zone_id: str | None = None
    direction: Literal["in", "out"] | None = None
    merchant_id: str | None = None
    enabled: bool = True


class Merchant(_Out):
    id: str
    venue_id: str
    name: str
    currency: str


class SpendingPolicy(_Out):
    guest_id: str
    payer_guest_id: str
    payment_enabled: bool
    daily_limit: int | None = None
    pin_threshold: int | None = None
    has_pin: bool


class Account(_Out):
    id: str
    venue_id: str
    kind: str  # wallet, folio (and the hub's own revenue/clearing accounts)
    currency: str
    guest_id: str | None = None
    stay_id: str | None = None
    balance: int
    open: bool
    closed_at: datetime | None = None


class StatementLine(_Out):
    transaction_id: str
    type: str
    at: datetime
    merchant_id: str | None = None
    amount: int  # signed: what the line did to the account
    balance: int


class Statement(_Out):
    account: Account
    lines: list[StatementLine]
    total_charges: int
    total_refunds: int


class Transaction(_Out):
    id: str
    type: str  # charge, refund, topup, settlement
    approved: bool
    reason: str
    amount: int
    currency: str
    guest_id: str | None = None
    account_id: str | None = None
    merchant_id: str | None = None
    device_id: str | None = None
    original_id: str | None = None
    items: list[dict[str, Any]] = []
    balance_after: int | None = None
    idempotency_key: str
    created_at: datetime


class PhoneKeyIssued(_Out):
    token: str  # ES256 JWT; present it with a proof for each lock's challenge
    jti: str
    kid: str
    zones: list[str]
    nbf: datetime
    exp: datetime


class Venue(_Out):
    id: str
    name: str
    allow_plain_uid: bool = False


class BrokerLogin(_Out):
    username: str
    password: str

    def __repr__(self) -> str:  # never print a password
        return f"BrokerLogin(username={self.username!r})"


class Event(_Out):
    """One row of the journey (``GET /events``)."""

    id: int
    device_id: str
    event_id: str
    kind: str
    credential_ref: str | None = None
    guest_id: str | None = None
    outcome: str
    reason: str
    text: str


class AuditEntry(_Out):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any] = {}
    source: str = ""


M = TypeVar("M", bound=_Out)


def api_base(url: str) -> str:
    """The API root for a hub address; ``http://h:8000`` and ``http://h:8000/api/v1`` both work."""
    root = url.strip().rstrip("/")
    return root if root.endswith(API_PREFIX) else root + API_PREFIX


def error_detail(response: httpx.Response) -> str:
    """The hub's ``detail`` in one line (FastAPI's 422 detail is a list of problems)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(p) for p in item.get("loc", ()))
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


class HubApi:
    """The hub's REST API v1 over httpx."""

    def __init__(
        self, url: str, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None,
        token: str | None = None, username: str | None = None, password: str | None = None,
    ) -> None:
        self.base_url = api_base(url)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        # Log in lazily: a command that never calls the API never logs in, one that does
        # logs in once.
        self._login = (username, password or "") if token is None and username else None
        if token is not None:
            self._http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubApi:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------- plumbing

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None, status: int | None = None,
    ) -> Any:
        """One call; the decoded JSON body, or HubApiError / HubUnreachable.

        ``status``: the success code the API promises (e.g. 201); any other is an error.
        """
        if self._login is not None:
            self.log_in(*self._login)
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, params=query, json=json)
        except httpx.TransportError as exc:
            raise HubUnreachable(f"hub API not reachable at {self.base_url}: {exc}") from exc
        if response.is_error:
            raise HubApiError(method, path, response.status_code, error_detail(response))
        if status is not None and response.status_code != status:
            raise HubApiError(method, path, response.status_code, f"expected HTTP {status}")
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise HubApiError(method, path, response.status_code, "response is not JSON") from None

    def log_in(self, username: str, password: str) -> None:
        """Exchange a staff user's name and password for a token used by every later call."""
        self._login = None
        try:
            response = self._http.post("/auth/token",
                                       json={"username": username, "password": password})
        except httpx.TransportError as exc:
            raise HubUnreachable(f"hub API not reachable at {self.base_url}: {exc}") from exc
        if response.is_error:
            raise HubApiError("POST", "/auth/token", response.status_code,
                              f"log-in as {username!r} refused: {error_detail(response)}")
        try:
            token = response.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise HubApiError("POST", "/auth/token", response.status_code,
                              "the log-in answer holds no access_token") from None
        self._http.headers["Authorization"] = f"Bearer {token}"

    def _one(self, model: type[M], method: str, path: str, **kw: Any) -> M:
        body = self.request(method, path, **kw)
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise HubApiError(method, path, 200, f"unexpected response: {exc}") from None

    def _list(self, model: type[M], path: str, params: dict[str, Any]) -> list[M]:
        body = self.request("GET", path, params=params)
        # The sketch gives plain arrays for lists; accept an {"items": [...]} page as well,
        # but only a complete one: following cursors is not worth it for these lists.
        if isinstance(body, dict) and "items" in body:
            if body.get("next_cursor"):
                raise HubApiError("GET", path, 200, "paginated list; the simulator reads one page")
            body = body["items"]
        try:
            return TypeAdapter(list[model]).validate_python(body)  # type: ignore[valid-type]
        except ValidationError as exc:
            raise HubApiError("GET", path, 200, f"unexpected response: {exc}") from None

    # ---------------------------------------------------------------- calls

    def health(self) -> dict[str, Any]:
        body = self.request("GET", "/health")
        if not isinstance(body, dict):
            raise HubApiError("GET", "/health", 200, f"unexpected response: {body!r}")
        return body

    def stats(self) -> dict[str, Any]:
        """The bridge's counters (``GET /stats``): decisions, errors by code, refusals."""
        body = self.request("GET", "/stats")
        if not isinstance(body, dict):
            raise HubApiError("GET", "/stats", 200, f"unexpected response: {body!r}")
        return body

    def audit(self, *, action: str | None = None, target: str | None = None,
              actor: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Audit entries, newest first (admins and auditors)."""
        params = {"action": action, "target": target, "actor": actor, "limit": limit}
        return self._list(AuditEntry, "/audit", params)

    def events(self, *, device_id: str | None = None, guest_id: str | None = None,
               limit: int = 50) -> list[Event]:
        """The newest page of the journey."""
        params = {"device_id": device_id, "guest_id": guest_id, "limit": limit}
        body = self.request("GET", "/events", params=params)
        try:
            return TypeAdapter(list[Event]).validate_python(body["items"])
        except (ValidationError, TypeError, KeyError) as exc:
            raise HubApiError("GET", "/events", 200, f"unexpected response: {exc}") from None

    def create_venue(self, venue_id: str, name: str) -> Venue:
        return self._one(Venue, "POST", "/venues", json={"id": venue_id, "name": name},
                         status=201)

    def venue(self, venue_id: str) -> Venue:
        return self._one(Venue, "GET", f"/venues/{venue_id}")

    def create_device(self, device_id: str, venue_id: str, kind: str, name: str,
                      zone_id: str | None = None) -> Device:
        payload = {"id": device_id, "venue_id": venue_id, "kind": kind, "name": name,
                   "zone_id": zone_id}
        return self._one(Device, "POST", "/devices", json=_compact(payload), status=201)

    def reissue_broker_login(self, device_id: str) -> BrokerLogin:
        """A new broker password for a device (the old one stops)."""
        return self._one(BrokerLogin, "POST", f"/devices/{device_id}/broker-credentials")

    def guest_token(self, guest_id: str) -> str:
        """A token for the guest's own app (``POST /guests/{id}/token``, staff)."""
        body = self.request("POST", f"/guests/{guest_id}/token", status=201)
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise HubApiError("POST", f"/guests/{guest_id}/token", 201, "no access_token")
        return str(body["access_token"])

    def erase_guest(self, guest_id: str) -> dict[str, Any]:
        """Erase a guest's personal data (admins); the hub's erasure report."""
        body = self.request("POST", f"/guests/{guest_id}/erase", status=200)
        return body if isinstance(body, dict) else {}

    def guest_broker_login(self, guest_id: str) -> tuple[str, str]:
        """The (username, password) the guest's app logs in to the broker with."""
        body = self.request("POST", f"/guests/{guest_id}/broker-login", status=200)
        if not isinstance(body, dict) or not {"username", "password"} <= body.keys():
            raise HubApiError("POST", f"/guests/{guest_id}/broker-login", 200,
                              "unexpected response")
        return str(body["username"]), str(body["password"])

    def create_guest(self, name: str, display_name: str | None = None) -> Guest:
        payload = {"name": name, "display_name": display_name}
        return self._one(Guest, "POST", "/guests", json=_compact(payload))

    def create_credential(
        self, guest_id: str, kind: CredentialKind, identifier: str | None = None,
        label: str | None = None,
    ) -> Credential:
        payload = {"guest_id": guest_id, "kind": kind, "identifier": identifier, "label": label}
        return self._one(Credential, "POST", "/credentials", json=_compact(payload))

    def set_credential_status(self, credential_id: str, status: CredentialStatus) -> Credential:
        return self._one(
            Credential, "PATCH", f"/credentials/{credential_id}", json={"status": status}
        )

    def issue_phone_key(self, credential_id: str, phone_jwk: dict[str, str],
                        venue: str | None = None) -> PhoneKeyIssued:
        """Have the hub sign a phone key bound to the phone's public key (its JWK), for
        ``venue`` (default: where the guest holds the most zones)."""
        body: dict[str, object] = {"phone_jwk": phone_jwk}
        if venue is not None:
            body["venue"] = venue
        return self._one(PhoneKeyIssued, "POST", f"/credentials/{credential_id}/phone-key",
                         json=body, status=201)

    def credentials(
        self, guest_id: str | None = None, kind: CredentialKind | None = None,
        identifier: str | None = None,
    ) -> list[Credential]:
        params = {"guest_id": guest_id, "kind": kind, "identifier": identifier}
        return self._list(Credential, "/credentials", params)

    def create_entitlement(
        self, guest_id: str, kind: EntitlementKind, zone_ids: list[str],
        valid_from: datetime, valid_until: datetime,
    ) -> Entitlement:
        payload = {
            "guest_id": guest_id, "kind": kind, "zone_ids": zone_ids,
            "valid_from": valid_from.isoformat(), "valid_until": valid_until.isoformat(),
        }
        return self._one(Entitlement, "POST", "/entitlements", json=payload)

    def guest_credentials(self, guest_id: str) -> list[Credential]:
        """Every credential of one guest (``GET /guests/{id}/credentials``; their own app too)."""
        return self._list(Credential, f"/guests/{guest_id}/credentials", {"limit": 500})

    def guest_entitlements(self, guest_id: str) -> list[Entitlement]:
        """Every entitlement of one guest (``GET /guests/{id}/entitlements``)."""
        return self._list(Entitlement, f"/guests/{guest_id}/entitlements", {"limit": 500})

    def entitlements(
        self, guest_id: str | None = None, kind: EntitlementKind | None = None
    ) -> list[Entitlement]:
        return self._list(Entitlement, "/entitlements", {"guest_id": guest_id, "kind": kind})

    def devices(
        self, venue_id: str | None = None, kind: str | None = None, zone_id: str | None = None
    ) -> list[Device]:
        params = {"venue_id": venue_id, "kind": kind, "zone_id": zone_id}
        return self._list(Device, "/devices", params)

    def device(self, device_id: str) -> Device:
        return self._one(Device, "GET", f"/devices/{device_id}")

    # ------------------------------------------------------------- payments

    def merchants(self) -> list[Merchant]:
        return self._list(Merchant, "/merchants", {"limit": 500})

    def set_spending_policy(
        self, guest_id: str, *, payment_enabled: bool = True, daily_limit: int | None = None,
        pin: str | None = None, pin_threshold: int | None = None,
        payer_guest_id: str | None = None, reset_pin_lock: bool = False,
    ) -> SpendingPolicy:
        """Replace a guest's spending policy (an omitted PIN keeps the old one)."""
        payload = {
            "payment_enabled": payment_enabled, "daily_limit": daily_limit, "pin": pin,
            "pin_threshold": pin_threshold, "payer_guest_id": payer_guest_id,
            "reset_pin_lock": reset_pin_lock,
        }
        return self._one(SpendingPolicy, "PUT", f"/guests/{guest_id}/spending-policy",
                         json=_compact(payload))

    def create_account(
        self, guest_id: str, venue_id: str, kind: AccountKind, stay_id: str | None = None
    ) -> Account:
        """Open a wallet, or the folio of a stay (``stay_id``: the room entitlement)."""
        payload = {"guest_id": guest_id, "venue_id": venue_id, "kind": kind, "stay_id": stay_id}
        return self._one(Account, "POST", "/accounts", json=_compact(payload), status=201)

    def account(self, account_id: str) -> Account:
        return self._one(Account, "GET", f"/accounts/{account_id}")

    def accounts(self, guest_id: str) -> list[Account]:
        return self._list(Account, "/accounts", {"guest_id": guest_id})

    def statement(self, account_id: str) -> Statement:
        return self._one(Statement, "GET", f"/accounts/{account_id}/statement")

    def top_up(
        self, account_id: str, amount: int, idempotency_key: str, method: TopUpMethod = "card"
    ) -> Transaction:
        payload = {"amount": amount, "idempotency_key": idempotency_key, "method": method}
        return self._one(Transaction, "POST", f"/accounts/{account_id}/topups", json=payload,
                         status=201)

    def settle(self, account_id: str, idempotency_key: str) -> Transaction:
        """Check-out: pay a folio's balance and close it."""
        return self._one(Transaction, "POST", f"/accounts/{account_id}/settle",
                         json={"idempotency_key": idempotency_key}, status=201)

    def transactions(
        self, guest_id: str | None = None, account_id: str | None = None
    ) -> list[Transaction]:
        params = {"guest_id": guest_id, "account_id": account_id, "limit": 500}
        return self._list(Transaction, "/transactions", params)

    def refund(
        self, transaction_id: str, idempotency_key: str, amount: int | None = None
    ) -> Transaction:
        """Refund ``amount`` of a charge (all that is left when None)."""
        payload = {"amount": amount, "idempotency_key": idempotency_key}
        return self._one(Transaction, "POST", f"/transactions/{transaction_id}/refunds",
                         json=_compact(payload), status=201)


@dataclass(frozen=True, slots=True)
class LoginAnswer:
    """How the hub answered one log-in attempt."""

    status: int
    detail: str
    retry_after: int | None = None  # seconds, on a 429


class LogInAttempts:
    """Log-in attempts as they are, from one client address: a guesser's tool.

    ``local_address``: the address to connect from (a loopback hub can be reached from
    any 127.x.y.z on Linux, so a guessing run need not share the throttle of this
    machine's own 127.0.0.1). OSError when the address cannot be bound.
    """

    def __init__(self, url: str, *, local_address: str | None = None, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = api_base(url)
        if transport is None and local_address is not None:
            transport = httpx.HTTPTransport(local_address=local_address)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def attempt(self, username: str, password: str) -> LoginAnswer:
        try:
            response = self._http.post("/auth/token",
                                       json={"username": username, "password": password})
        except httpx.TransportError as exc:
            raise HubUnreachable(f"hub API not reachable at {self.base_url}: {exc}") from exc
        wait = response.headers.get("Retry-After")
        return LoginAnswer(response.status_code,
                           "" if response.is_success else error_detail(response),
                           int(wait) if wait is not None and wait.isdigit() else None)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _compact(payload: dict[str, Any]) -> dict[str, Any]:
    """Leave out unset optional fields rather than sending nulls."""
    return {k: v for k, v in payload.items() if v is not None}
