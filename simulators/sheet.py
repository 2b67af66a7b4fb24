"""The provisioning sheet ``hub up --demo`` writes: the broker's address, each device's and
demo guest's broker login, the secure bands' SDM keys, and the offline locks' trust anchor.

``hub-sim`` reads it by itself (``--provisioning``, default ``./hub-data/demo-provisioning.json``
when it exists), so devices and guests' apps log in to the hub's closed broker. Nothing
here ever prints a password.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.key_material import KeyState
from devices.topics import valid_id


class SheetError(ValueError):
    """The provisioning sheet is not the one the demo writes."""


@dataclass(frozen=True, slots=True)
class DeviceLogin:
    """One device's broker credentials."""

    venue: str
    username: str
    password: str

    def __repr__(self) -> str:  # never print a password
        return f"DeviceLogin(venue={self.venue!r}, username={self.username!r})"


@dataclass(frozen=True, slots=True)
class TagKeys:
    """The SDM keys written onto one secure band (hex)."""

    meta_read_key: str
    file_read_key: str

    def __repr__(self) -> str:
        return "TagKeys(...)"


@dataclass(frozen=True, slots=True)
class Sheet:
    """The provisioning sheet: where the broker is, who may log in, the bands' keys."""

    broker_host: str
    broker_port: int
    devices: Mapping[str, DeviceLogin]
    tags: Mapping[str, TagKeys]
    guests: Mapping[str, DeviceLogin] = field(default_factory=dict)  # guest id -> app login
    # The broker's TLS listener and the CA to trust there, when the hub has one (hub-sim
    # uses them only when told to speak TLS: --ca or mqtts://).
    broker_tls_port: int | None = None
    broker_ca: Path | None = None
    # The hub's public JWKS: the trust anchor offline locks check key material against.
    key_anchor: Mapping[str, Any] | None = None

    @property
    def connect_host(self) -> str:
        """Where to connect: a wildcard listen address means this machine."""
        return connect_host(self.broker_host)


def connect_host(host: str) -> str:
    """The address to dial for a broker listening on ``host`` (``0.0.0.0`` -> loopback)."""
    if host in ("", "0.0.0.0", "*"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SheetError(f"{where} must be a non-empty string")
    return value


def _key_hex(value: Any, where: str) -> str:
    text = _text(value, where)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise SheetError(f"{where} is not hex") from None
    if len(raw) != 16:
        raise SheetError(f"{where} must be a 16-byte AES key, got {len(raw)} bytes")
    return text


def parse_sheet(data: Any) -> Sheet:
    """Validate a decoded provisioning sheet; SheetError says what is wrong (never a secret)."""
    if not isinstance(data, dict):
        raise SheetError("the sheet must be a JSON object")
    broker = data.get("broker")
    if not isinstance(broker, dict):
        raise SheetError("broker must be an object with host and port")
    host = _text(broker.get("host"), "broker.host")
    port = broker.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise SheetError("broker.port must be a TCP port number")
    tls_port, ca = broker.get("tls_port"), broker.get("ca")
    if tls_port is not None and (isinstance(tls_port, bool) or not isinstance(tls_port, int)
                                 or not 0 < tls_port < 65536):
        raise SheetError("broker.tls_port must be a TCP port number")
    if ca is not None:
        ca = _text(ca, "broker.ca")
    devices_in, tags_in = data.get("devices"), data.get("tags")
    if not isinstance(devices_in, dict) or not devices_in:
        raise SheetError("devices must be a non-empty object: device id -> credentials")
    if not isinstance(tags_in, dict):
        raise SheetError("tags must be an object: UID -> keys")
    devices: dict[str, DeviceLogin] = {}
    for device_id, login in devices_in.items():
        if not valid_id(device_id):
            raise SheetError(f"device id {device_id!r} is not a valid id")
        if not isinstance(login, dict):
            raise SheetError(f"devices.{device_id} must be an object")
        devices[device_id] = DeviceLogin(
            venue=_text(login.get("venue"), f"devices.{device_id}.venue"),
            username=_text(login.get("username"), f"devices.{device_id}.username"),
            password=_text(login.get("password"), f"devices.{device_id}.password"))
    tags: dict[str, TagKeys] = {}
    for uid, keys in tags_in.items():
        try:
            raw_uid = bytes.fromhex(uid)
        except (TypeError, ValueError):
            raise SheetError(f"tag UID {uid!r} is not hex") from None
        if len(raw_uid) != 7:
            raise SheetError(f"tag UID {uid!r} is not a 7-byte NTAG 424 DNA UID")
        if not isinstance(keys, dict):
            raise SheetError(f"tags.{uid} must be an object")
        tags[uid.upper()] = TagKeys(
            meta_read_key=_key_hex(keys.get("meta_read_key"), f"tags.{uid}.meta_read_key"),
            file_read_key=_key_hex(keys.get("file_read_key"), f"tags.{uid}.file_read_key"))
    guests_in = data.get("guests", {})
    if not isinstance(guests_in, dict):
        raise SheetError("guests must be an object: guest id -> credentials")
    guests: dict[str, DeviceLogin] = {}
    for guest_id, login in guests_in.items():
        if not valid_id(guest_id) or not isinstance(login, dict):
            raise SheetError(f"guests.{guest_id} must be an object under a valid id")
        guests[guest_id] = DeviceLogin(
            venue="", username=_text(login.get("username"), f"guests.{guest_id}.username"),
            password=_text(login.get("password"), f"guests.{guest_id}.password"))
    anchor = data.get("key_anchor")
    if anchor is not None:
        try:
            KeyState.from_anchor("-", anchor)  # the venue is irrelevant to the check
        except (ValueError, TypeError, AttributeError):
            raise SheetError("key_anchor must be a JWKS of public P-256 keys") from None
    return Sheet(broker_host=host, broker_port=port, devices=devices, tags=tags, guests=guests,
                 broker_tls_port=tls_port, broker_ca=None if ca is None else Path(ca),
                 key_anchor=anchor)


def load_sheet(path: Path) -> Sheet:
    """Read and validate the sheet at ``path``; FileNotFoundError or SheetError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SheetError(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise SheetError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from None
    return parse_sheet(data)
