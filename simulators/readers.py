"""Simulated credentials and readers: thin wrappers over :class:`devices.client.DeviceClient`.

A simulator *is* a set of devices: it connects to the broker as each reader it
plays, exactly like real firmware would, and never talks to the hub any other way.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import unquote, urlsplit

from devices.client import DeviceClient
from devices.contract import PhoneKeyCredential, WristbandCredential

DEFAULT_MQTT_PORT = 1883


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
    """Where the devices connect: ``mqtt://[user[:password]@]host[:port]``."""

    host: str
    port: int = DEFAULT_MQTT_PORT
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"


def parse_broker_url(url: str) -> Broker:
    """Parse ``mqtt://host:port`` (a bare ``host[:port]`` is accepted too); ValueError if not."""
    text = url.strip()
    if "://" not in text:
        text = f"mqtt://{text}"
    parts = urlsplit(text)
    if parts.scheme != "mqtt":
        # DeviceClient speaks plain TCP only; mqtts/ws would fail later and less clearly.
        raise ValueError(f"unsupported broker scheme {parts.scheme!r} (only mqtt://)")
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
        port=DEFAULT_MQTT_PORT if port is None else port,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def connect_device(
    venue: str, device_id: str, broker: Broker, timeout: float = 5.0
) -> DeviceClient:
    """Connect as one device; ConnectionError (or OSError) when the broker is unreachable."""
    client = DeviceClient(
        venue, device_id, host=broker.host, port=broker.port,
        username=broker.username, password=broker.password,
    )
    return client.connect(timeout)


class ReaderPool:
    """The readers a scenario plays, each connected on first use and all closed together."""

    def __init__(self, venue: str, broker: Broker, connect_timeout: float = 5.0) -> None:
        self.venue = venue
        self.broker = broker
        self.connect_timeout = connect_timeout
        self._clients: dict[str, DeviceClient] = {}

    def __getitem__(self, device_id: str) -> DeviceClient:
        client = self._clients.get(device_id)
        if client is None:
            client = connect_device(self.venue, device_id, self.broker, self.connect_timeout)
            self._clients[device_id] = client
        return client

    def close(self) -> None:
        """Disconnect every reader (each announces itself offline)."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> ReaderPool:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
