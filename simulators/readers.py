"""Simulated credentials, readers, payment terminals and guests' phone apps.

A simulator *is* a set of devices: it connects to the broker as each reader or
terminal it plays, exactly like real firmware would (through
:class:`devices.client.DeviceClient`, which taps and pays), and never talks to the
hub any other way. A guest's phone app (:class:`GuestApp`) listens on the guest's
notifications topic.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from devices.client import DeviceClient, new_event_id, nodelay, use_tls
from devices.contract import (
    GuestNotice,
    LineItem,
    PaymentRequest,
    PhoneKeyCredential,
    Receipt,
    WristbandCredential,
    parse_notification,
    utcnow,
)
from devices.topics import guest_topic

DEFAULT_MQTT_PORT = 1883
DEFAULT_MQTTS_PORT = 8883  # MQTT over TLS (IANA), the hub's embedded TLS listener too


# ----------------------------------------------------------------- credentials


def random_uid() -> str:
    """A fresh 7-byte NFC UID in upper-case hex; ``04`` is the NXP manufacturer byte."""
    return "04" + secrets.token_hex(6).upper()


@dataclass(frozen=True, slots=True)
class Wristband:
    """A wristband (or card) and the UID its tag reports."""

    uid: str

    @classmethod
    def random(cls) -> Wristband:
        """A band with a UID that no hub has seen (with overwhelming probability)."""
        return cls(random_uid())

    @property
    def credential(self) -> WristbandCredential:
        """What a reader puts on the wire when this band is tapped."""
        return WristbandCredential(uid=self.uid)


@dataclass(frozen=True, slots=True)
class PhoneKey:
    """A phone key presented over BLE."""

    key_id: str

    @property
    def credential(self) -> PhoneKeyCredential:
        """What a reader puts on the wire when this key is presented."""
        return PhoneKeyCredential(key_id=self.key_id)


Holder = Wristband | PhoneKey


# ---------------------------------------------------------------------- broker


@dataclass(frozen=True, slots=True)
class Broker:
    """Where the devices connect: ``mqtt://[user[:password]@]host[:port]``; with the logins
    of a provisioning sheet, each device and guest app logs in as itself. With ``tls_ca``
    every connection speaks TLS, trusting that CA file (the venue's)."""

    host: str
    port: int = DEFAULT_MQTT_PORT
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    # device id -> (username, password); guest id -> (username, password)
    logins: Mapping[str, tuple[str, str]] = field(default_factory=dict, compare=False,
                                                  hash=False, repr=False)
    guest_logins: Mapping[str, tuple[str, str]] = field(default_factory=dict, compare=False,
                                                        hash=False, repr=False)

    def login_for(self, device_id: str) -> tuple[str | None, str | None]:
        """The device's own login when the sheet has one, else the broker URL's."""
        return self.logins.get(device_id, (self.username, self.password))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls_ca else 'mqtt'}://{host}:{self.port}"


def parse_broker_url(url: str) -> Broker:
    """Parse ``mqtt://host:port`` (a bare ``host[:port]`` is accepted too); ValueError if not.

    ``mqtts://host[:8883]`` is accepted as well: the port defaults to 8883, and the caller
    gives the CA to trust (:attr:`Broker.tls_ca`) before anything connects.
    """
    text = url.strip()
    if "://" not in text:
        text = f"mqtt://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("mqtt", "mqtts"):
        # DeviceClient speaks MQTT over TCP or TLS; ws would fail later and less clearly.
        raise ValueError(f"unsupported broker scheme {parts.scheme!r} (mqtt:// or mqtts://)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"a broker URL is mqtt://host:port, not {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid port in broker URL {url!r}") from None
    if not parts.hostname:
        raise ValueError(f"no host in broker URL {url!r}")
    return Broker(
        host=parts.hostname,
        port=(DEFAULT_MQTTS_PORT if parts.scheme == "mqtts" else DEFAULT_MQTT_PORT)
        if port is None else port,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def connect_device(
    venue: str, device_id: str, broker: Broker, timeout: float = 5.0
) -> DeviceClient:
    """Connect as one device; ConnectionError (or OSError) when the broker is unreachable."""
    username, password = broker.login_for(device_id)
    client = DeviceClient(
        venue, device_id, host=broker.host, port=broker.port,
        username=username, password=password, tls_ca=broker.tls_ca,
    )
    return client.connect(timeout)


# ------------------------------------------------------------------ payments

AccountChoice = Literal["auto", "wallet", "folio"]


def new_idempotency_key() -> str:
    """A fresh idempotency key: one per purchase attempt (a PIN retry is a new attempt)."""
    return f"pay-{uuid.uuid4().hex}"


def parse_item(text: str) -> LineItem:
    """``name:quantity:unit_amount`` (minor units) as a line item; ValueError if not.

    The name may itself contain colons: the last two fields are the numbers.
    """
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0].strip():
        raise ValueError(f"an item is name:quantity:unit_amount, not {text!r}")
    name, quantity, unit = parts[0].strip(), parts[1].strip(), parts[2].strip()
    if not (quantity.isdecimal() and unit.isdecimal()):
        raise ValueError(f"quantity and unit amount must be whole numbers in {text!r}")
    try:
        return LineItem(name=name, quantity=int(quantity), unit_amount=int(unit))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid item {text!r}: {problems}") from None


def items_total(items: Iterable[LineItem]) -> int:
    """What the line items add up to, in minor units."""
    return sum(i.quantity * i.unit_amount for i in items)


def payment_request(
    credential: WristbandCredential | PhoneKeyCredential, *, amount: int, currency: str,
    merchant_id: str, idempotency_key: str | None = None, items: Sequence[LineItem] = (),
    pin: str | None = None, account: AccountChoice = "auto", event_id: str | None = None,
) -> PaymentRequest:
    """A terminal's payment request (a fresh event id and, unless given, a fresh key)."""
    return PaymentRequest(
        event_id=event_id or new_event_id(), ts=utcnow(), credential=credential, amount=amount,
        currency=currency, merchant_id=merchant_id,
        idempotency_key=idempotency_key or new_idempotency_key(), items=list(items), pin=pin,
        account=account,
    )


# ------------------------------------------------------------------ receipts


@dataclass(frozen=True, slots=True)
class ArrivedReceipt:
    """A receipt as a guest's app got it: on whose topic, and when (``time.perf_counter``)."""

    guest_id: str
    receipt: Receipt
    at: float

    def __str__(self) -> str:
        r = self.receipt
        balance = "" if r.balance_after is None else f", balance {r.balance_after}"
        return (f"{r.type} {r.amount} {r.currency} to {self.guest_id} "
                f"({r.account}{balance}, txn {r.transaction_id})")


@dataclass(frozen=True, slots=True)
class ExpectedReceipt:
    """The receipt a script waits for; fields left None are not checked.

    A receipt is *the one* when guest, type and (if given) transaction id agree;
    the other fields are then compared, so a wrong balance is reported as such
    rather than as a missing receipt.
    """

    guest_id: str
    type: Literal["charge", "refund", "topup", "settlement"]
    transaction_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    account: Literal["wallet", "folio"] | None = None
    balance_after: int | None = None
    merchant_name: str | None = None
    items: tuple[LineItem, ...] | None = None
    spent_by: str | None = None  # the guest who tapped, on a receipt to someone else

    def identifies(self, arrived: ArrivedReceipt) -> bool:
        r = arrived.receipt
        return (arrived.guest_id == self.guest_id and r.type == self.type
                and (self.transaction_id is None or r.transaction_id == self.transaction_id))

    def differences(self, arrived: ArrivedReceipt) -> list[str]:
        """What differs from the expectation, one short phrase each; empty when it matches."""
        r = arrived.receipt
        found: list[str] = []
        if r.guest_id != arrived.guest_id:
            found.append(f"guest_id {r.guest_id} on {arrived.guest_id}'s topic")
        for name in ("amount", "currency", "account", "balance_after", "merchant_name",
                     "spent_by"):
            want = getattr(self, name)
            if want is not None and getattr(r, name) != want:
                found.append(f"{name} {getattr(r, name)!r}, expected {want!r}")
        if self.items is not None and tuple(r.items) != self.items:
            found.append(f"items {_items_text(r.items)}, expected {_items_text(self.items)}")
        return found

    def __str__(self) -> str:
        parts = [f"{self.type}" + (f" {self.amount}" if self.amount is not None else "")]
        if self.account is not None:
            parts.append(self.account)
        if self.balance_after is not None:
            parts.append(f"balance {self.balance_after}")
        if self.merchant_name is not None:
            parts.append(repr(self.merchant_name))
        if self.items is not None:
            parts.append(f"{len(self.items)} item" + ("s" if len(self.items) != 1 else ""))
        if self.spent_by is not None:
            parts.append(f"spent by {self.spent_by}")
        return ", ".join(parts)


def _items_text(items: Iterable[LineItem]) -> str:
    return "[" + ", ".join(f"{i.quantity}x{i.name}@{i.unit_amount}" for i in items) + "]"


def take_receipt(backlog: list[ArrivedReceipt], expected: ExpectedReceipt) -> ArrivedReceipt | None:
    """Remove and return the first receipt in ``backlog`` that ``expected`` identifies."""
    for index, arrived in enumerate(backlog):
        if expected.identifies(arrived):
            return backlog.pop(index)
    return None


class GuestApp:
    """Guests' phone apps: follows notifications topics and collects the receipts.

    ``DeviceClient`` only subscribes to its own device's channels, so this is a
    minimal paho client of its own (TCP_NODELAY like ``DeviceClient``). On an open broker
    one connection follows several guests; on a closed one (the broker knows guests'
    logins: :attr:`Broker.guest_logins`) each guest's app logs in as that guest, as a
    real phone does. Each receipt is filed under the guest whose topic it came on.
    Offers and notices (:class:`GuestNotice`) share the topic: they are kept in
    :attr:`notices`, (guest id, notice). Payloads that are neither are kept in
    :attr:`invalid` (the hub broke the contract) rather than dropped.
    """

    def __init__(self, venue: str, broker: Broker,
                 login_of: Callable[[str], tuple[str, str]] | None = None) -> None:
        self.venue = venue
        self.broker = broker
        # On a closed broker, the login of a guest the sheet does not list (one made by a
        # scenario): the app asks the hub, as a real one does at check-in.
        self.login_of = login_of
        self.invalid: list[tuple[str, bytes, str]] = []
        self.notices: list[tuple[str, GuestNotice]] = []
        self._arrivals: queue.SimpleQueue[ArrivedReceipt] = queue.SimpleQueue()
        self._backlog: list[ArrivedReceipt] = []
        self._topics: dict[str, str] = {}  # topic -> guest id
        self._acked: set[int] = set()
        self._failed: set[int] = set()
        self._cond = threading.Condition()
        # One connection per guest on a closed broker, one for all (key None) on an open one.
        self._clients: dict[str | None, mqtt.Client] = {}
        self._timeout = 5.0

    def connect(self, timeout: float = 5.0) -> GuestApp:
        """Connect; ConnectionError (or OSError) when the broker is unreachable.

        With guests' logins, each guest's connection opens when it is followed."""
        self._timeout = timeout
        if not self.broker.guest_logins:
            self._connection(None)
        return self

    def _connection(self, guest_id: str | None) -> mqtt.Client:
        key = guest_id if self.broker.guest_logins else None
        client = self._clients.get(key)
        if client is not None:
            return client
        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=f"app-{uuid.uuid4().hex[:10]}", protocol=mqtt.MQTTv311)
        username: str | None
        password: str | None
        if key is None:
            username, password = self.broker.username, self.broker.password
        elif key in self.broker.guest_logins:
            username, password = self.broker.guest_logins[key]
        elif self.login_of is not None:
            username, password = self.login_of(key)
        else:
            raise ConnectionError(f"no broker login for guest {key!r}")
        if username is not None:
            client.username_pw_set(username, password)
        if self.broker.tls_ca is not None:
            use_tls(client, self.broker.tls_ca)
        connected = threading.Event()
        client.on_connect = lambda c, u, f, rc, p=None: self._on_connect(c, rc, connected)
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.connect(self.broker.host, self.broker.port, keepalive=30)
        client.loop_start()
        if not connected.wait(self._timeout):
            client.loop_stop()
            raise ConnectionError(f"no CONNACK from {self.broker} in {self._timeout}s "
                                  "(refused? a closed broker needs the guests' logins: "
                                  "hub-sim --provisioning)")
        self._clients[key] = client
        return client

    def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.disconnect()
            client.loop_stop()

    def __enter__(self) -> GuestApp:
        return self.connect()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def follow(self, guest_id: str, timeout: float = 5.0) -> None:
        """Subscribe to ``guest_id``'s notifications and wait until the broker confirms it."""
        topic = guest_topic(self.venue, guest_id)
        self._topics[topic] = guest_id
        _, mid = self._connection(guest_id).subscribe(topic, qos=1)
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._acked or mid in self._failed,
                                       timeout):
                raise ConnectionError(f"no SUBACK for {topic} in {timeout}s")
            if mid in self._failed:
                raise ConnectionError(f"the broker refused the subscription to {topic}")

    def wait_for(self, expected: ExpectedReceipt, timeout: float) -> ArrivedReceipt | None:
        """The receipt ``expected`` identifies, taken from what arrived, waiting up to
        ``timeout`` seconds for it; None if it did not come. Others are kept for later."""
        deadline = time.monotonic() + timeout
        while True:
            found = take_receipt(self._backlog, expected)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            try:
                arrived = (self._arrivals.get(timeout=left) if left > 0
                           else self._arrivals.get_nowait())
            except queue.Empty:
                return None
            self._backlog.append(arrived)

    def leftovers(self, settle: float = 0.0) -> list[ArrivedReceipt]:
        """Every receipt not taken by :meth:`wait_for`, after waiting ``settle`` seconds."""
        if settle > 0:
            time.sleep(settle)
        while True:
            try:
                self._backlog.append(self._arrivals.get_nowait())
            except queue.Empty:
                break
        found, self._backlog = self._backlog, []
        return found

    # ------------------------------------------------------------ callbacks

    def _on_connect(self, client: mqtt.Client, rc: Any, connected: threading.Event) -> None:
        if rc.is_failure:
            return
        nodelay(client)
        for topic, guest_id in list(self._topics.items()):  # after a reconnect: again
            if not self.broker.guest_logins or self._clients.get(guest_id) is client:
                client.subscribe(topic, qos=1)
        connected.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, codes: Any, _p: Any = None) -> None:
        with self._cond:
            failed = any(getattr(code, "is_failure", False) for code in codes)
            (self._failed if failed else self._acked).add(mid)
            self._cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        guest_id = self._topics.get(msg.topic)
        if guest_id is None:
            return
        try:
            message = parse_notification(bytes(msg.payload))
        except ValidationError as exc:
            self.invalid.append((msg.topic, bytes(msg.payload), str(exc).splitlines()[0]))
            return
        if isinstance(message, GuestNotice):
            self.notices.append((guest_id, message))
            return
        self._arrivals.put(ArrivedReceipt(guest_id, message, time.perf_counter()))


class ReaderPool:
    """The readers and terminals a scenario plays, and the guests' phone app, each
    connected on first use and all closed together."""

    def __init__(self, venue: str, broker: Broker, connect_timeout: float = 5.0,
                 guest_login: Callable[[str], tuple[str, str]] | None = None) -> None:
        self.venue = venue
        self.broker = broker
        self.connect_timeout = connect_timeout
        self.guest_login = guest_login
        self._clients: dict[str, DeviceClient] = {}
        self._app: GuestApp | None = None

    def __getitem__(self, device_id: str) -> DeviceClient:
        client = self._clients.get(device_id)
        if client is None:
            client = connect_device(self.venue, device_id, self.broker, self.connect_timeout)
            self._clients[device_id] = client
        return client

    def guest_app(self) -> GuestApp:
        """The (one) guests' phone app of this run, connected on first use."""
        if self._app is None:
            self._app = GuestApp(self.venue, self.broker, self.guest_login).connect(
                self.connect_timeout)
        return self._app

    def close(self) -> None:
        """Disconnect every reader (each announces itself offline) and the guest app."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
        app, self._app = self._app, None
        if app is not None:
            app.close()

    def __enter__(self) -> ReaderPool:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
