"""Per-device broker credentials and topic ACLs, for Mosquitto files and the embedded broker.

Pure: no network, no files. Usernames say who connects:

- ``{venue}.{device_id}``  one device; writes only ``device/{itself}/events|status`` and
  reads only ``hub/{itself}/#`` and ``keys/#`` (key material the hub alone writes) of its own venue
- ``guest-{guest_id}``      a guest's app; reads only ``{venue}/guest/{guest_id}/notifications``
- the bridge user           the hub; reads ``+/device/#``, writes ``+/hub/#``, ``+/guest/#``,
  ``+/keys/#`` and ``+/staff/#`` (alerts for staff)

A device's password is an HMAC of its identity under the hub's secret, so the hub
checks a password by recomputing it and needs no password table. What it does need is
:data:`Logins`: the logins that were re-issued (a generation above 0 goes into the HMAC, so
the old password stops) or revoked (``None``: no password opens them); a login absent from
it is at generation 0. The same rules
produce Mosquitto's password and ACL files (``mosquitto_files``) and drive the
embedded broker's plugins (``allowed``, ``password_ok``), so both brokers agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from devices.topics import DEVICE, HUB, ROOT, valid_id

BrokerAction = Literal["publish", "subscribe", "receive"]
# username -> its generation, or None when revoked; a username absent is at generation 0.
Logins = Mapping[str, int | None]
NO_CHANGES: Logins = {}

GUEST_PREFIX = "guest-"
PASSWORD_LENGTH = 32
MIN_SECRET_BYTES = 16
MOSQUITTO_SALT_BYTES = 12  # what mosquitto_passwd 2.x uses
MOSQUITTO_ITERATIONS = 101  # mosquitto_passwd's default
# Domain separation: each secret derived from the hub's key has a label of its own, so
# no device's password can equal the bridge's or any other key, whatever ids are chosen.
_PASSWORD_LABEL = b"venuehub/v1 broker password\x00"
_BRIDGE_PASSWORD_LABEL = b"venuehub/v1 bridge broker password\x00"
_GUEST_PASSWORD_LABEL = b"venuehub/v1 guest broker password\x00"

_BRIDGE_READ = (f"{ROOT}/+/{DEVICE}/#",)
_BRIDGE_WRITE = (f"{ROOT}/+/{HUB}/#", f"{ROOT}/+/guest/#", f"{ROOT}/+/keys/#",
                 f"{ROOT}/+/staff/#")


@dataclass(frozen=True, slots=True)
class BrokerAuth:
    """What a broker needs to check credentials; repr hides the secrets so logs never show them."""

    secret: bytes = field(repr=False)
    bridge_user: str
    bridge_password: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_secret(self.secret)
        _check_username(self.bridge_user)
        if (parse_device_username(self.bridge_user) is not None
                or _guest_of(self.bridge_user) is not None):
            raise ValueError(f"the bridge user {self.bridge_user!r} looks like a device or guest")
        if not self.bridge_password:
            raise ValueError("the bridge password must not be empty")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A CONNECT a broker turned away, for the hub's audit log (never the password)."""

    reason: str  # "login" or "takeover"
    username: str
    client_id: str
    address: str


# ------------------------------------------------------------------ usernames


def device_username(venue: str, device_id: str) -> str:
    """The broker username of one device: ``{venue}.{device_id}``.

    The venue may contain no dot (so the username splits at its first dot) and may not
    start with ``guest-`` (those usernames are guests'); device ids may contain dots.
    """
    if not (valid_id(venue) and valid_id(device_id)):
        raise ValueError(f"not a valid venue or device id: {venue!r}, {device_id!r}")
    if "." in venue or venue.startswith(GUEST_PREFIX):
        raise ValueError(f"venue {venue!r} cannot own device credentials: "
                         f"it contains '.' or starts with {GUEST_PREFIX!r}")
    return f"{venue}.{device_id}"


def parse_device_username(username: str) -> tuple[str, str] | None:
    """The (venue, device_id) of a device username, or None when it is not one."""
    if username.startswith(GUEST_PREFIX):
        return None
    venue, dot, device_id = username.partition(".")
    if not dot or not (valid_id(venue) and valid_id(device_id)):
        return None
    return venue, device_id


def guest_username(guest_id: str) -> str:
    """The broker username of a guest's app: ``guest-{guest_id}``."""
    if not valid_id(guest_id):
        raise ValueError(f"not a valid guest id: {guest_id!r}")
    return f"{GUEST_PREFIX}{guest_id}"


def _guest_of(username: str) -> str | None:
    if username.startswith(GUEST_PREFIX) and valid_id(username[len(GUEST_PREFIX):]):
        return username[len(GUEST_PREFIX):]
    return None


# ------------------------------------------------------------------ passwords


def _check_secret(secret: bytes) -> None:
    # Never put the secret itself in the message: exceptions end up in logs.
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the hub secret must be at least {MIN_SECRET_BYTES} bytes")


def _generation(generation: int) -> bytes:
    # Generation 0 adds nothing, so the passwords issued before re-issuing existed still work.
    if generation < 0:
        raise ValueError("a login's generation cannot be negative")
    return b"\x00" + str(generation).encode() if generation else b""


def device_password(secret: bytes, venue: str, device_id: str, generation: int = 0) -> str:
    """A device's broker password: HMAC-SHA256 of its identity (and its login's generation,
    once re-issued), url-safe base64, 32 chars."""
    _check_secret(secret)
    device_username(venue, device_id)  # validates both ids
    # Ids cannot contain NUL, so the encoding of (venue, device, generation) is unambiguous.
    message = (_PASSWORD_LABEL + venue.encode() + b"\x00" + device_id.encode()
               + _generation(generation))
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:PASSWORD_LENGTH]


def bridge_password(secret: bytes) -> str:
    """The bridge's broker password: derived under a label no device's password uses."""
    _check_secret(secret)
    digest = hmac.new(secret, _BRIDGE_PASSWORD_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:PASSWORD_LENGTH]


def guest_password(secret: bytes, guest_id: str, generation: int = 0) -> str:
    """A guest app's broker password (it reads that guest's notifications, nothing else)."""
    _check_secret(secret)
    guest_username(guest_id)  # validates the id
    digest = hmac.new(secret, _GUEST_PASSWORD_LABEL + guest_id.encode()
                      + _generation(generation), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:PASSWORD_LENGTH]


def can_own_credentials(venue: str) -> bool:
    """Whether devices of ``venue`` can have broker logins (see :func:`device_username`)."""
    return valid_id(venue) and "." not in venue and not venue.startswith(GUEST_PREFIX)


def password_ok(username: str, password: str | bytes | None, auth: BrokerAuth,
                logins: Logins = NO_CHANGES) -> bool:
    """True when ``password`` is this user's: the bridge's, or the device's derived one at
    its login's generation in ``logins`` (never for a login revoked there).

    A guest's app logs in as ``guest-{guest_id}`` with :func:`guest_password`.
    """
    if password is None or not username:
        return False
    given = password.encode() if isinstance(password, str) else bytes(password)
    generation = logins.get(username, 0)
    if username == auth.bridge_user:
        expected = auth.bridge_password
    elif generation is None:
        return False
    elif (device := parse_device_username(username)) is not None:
        expected = device_password(auth.secret, *device, generation)
    elif (guest := _guest_of(username)) is not None:
        expected = guest_password(auth.secret, guest, generation)
    else:
        return False
    return hmac.compare_digest(given, expected.encode())


def _check_username(username: str) -> None:
    # ':' splits Mosquitto's password lines, whitespace ends ACL "user" lines.
    if not username or ":" in username or any(c.isspace() for c in username) or "\x00" in username:
        raise ValueError(f"not a usable broker username: {username!r}")


def mosquitto_password_line(username: str, password: str, *, salt: bytes | None = None,
                            iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """One line of a Mosquitto 2 password file: ``user:$7$iterations$salt$hash``.

    ``$7$`` is PBKDF2-HMAC-SHA512 with a 64-byte key, salt and hash in standard
    base64, exactly as ``mosquitto_passwd`` writes it.
    """
    _check_username(username)
    if "\n" in password or "\r" in password:
        raise ValueError("a password cannot span lines")
    if iterations < 1:
        raise ValueError("iterations must be positive")
    salt = os.urandom(MOSQUITTO_SALT_BYTES) if salt is None else salt
    if not salt:
        raise ValueError("the salt must not be empty")
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, dklen=64)
    return (f"{username}:$7${iterations}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(key).decode()}")


def mosquitto_files(devices: Iterable[tuple[str, str]], *, secret: bytes, bridge_user: str,
                    bridge_password: str, guests: Iterable[str] = (),
                    logins: Logins = NO_CHANGES) -> tuple[str, str]:
    """(password file, ACL file) for Mosquitto: the bridge, one login per device and one
    per guest's app, each at its generation in ``logins``; revoked logins get no line.

    Use with ``allow_anonymous false`` and ``per_listener_settings false``; users without
    an ACL block may do nothing.
    """
    auth = BrokerAuth(secret, bridge_user, bridge_password)  # validates all three
    passwords = [mosquitto_password_line(bridge_user, bridge_password)]
    acl = ["# Generated by hub.broker_auth.mosquitto_files: do not edit.", "",
           f"user {bridge_user}",
           *(f"topic read {t}" for t in _BRIDGE_READ),
           *(f"topic write {t}" for t in _BRIDGE_WRITE)]
    for venue, device_id in sorted(set(devices)):
        if not can_own_credentials(venue):
            continue  # a venue id from before the rule: its devices get no login
        user = device_username(venue, device_id)
        if (generation := logins.get(user, 0)) is None:
            continue  # revoked
        passwords.append(mosquitto_password_line(
            user, device_password(auth.secret, venue, device_id, generation)))
        own = f"{ROOT}/{venue}"
        acl += ["", f"user {user}",
                f"topic write {own}/{DEVICE}/{device_id}/events",
                f"topic write {own}/{DEVICE}/{device_id}/status",
                f"topic read {own}/{HUB}/{device_id}/#",
                f"topic read {own}/keys/#"]
    for guest_id in sorted(set(guests)):
        if not valid_id(guest_id):
            continue  # an id no login can be made for (none are made through the API)
        user = guest_username(guest_id)
        if (generation := logins.get(user, 0)) is None:
            continue
        passwords.append(mosquitto_password_line(
            user, guest_password(auth.secret, guest_id, generation)))
        acl += ["", f"user {user}", *(f"topic read {t}" for t in _readable(user, bridge_user))]
    return "\n".join(passwords) + "\n", "\n".join(acl) + "\n"


# ----------------------------------------------------------------------- ACL


def _valid_filter(levels: list[str]) -> bool:
    """MQTT topic filter rules: ``#`` alone and last, ``+`` alone in its level."""
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _covers(pattern: str, levels: list[str]) -> bool:
    """True when every topic the filter ``levels`` can match also matches ``pattern``.

    For a plain topic (no wildcards) this is ordinary MQTT matching. A wildcard in the
    filter is covered only by a wildcard in the pattern at least as wide, so
    ``+/hub/#`` is not covered by ``demo/hub/gate-1/#``.
    """
    wanted = pattern.split("/")
    for i, p in enumerate(wanted):
        if p == "#":
            return True  # also covers the parent level itself, as '#' matches it
        if i >= len(levels):
            return False
        f = levels[i]
        if f == "#":
            return False  # the filter reaches deeper or wider than the pattern here
        if p == "+":
            continue
        if f != p:  # a '+' in the filter is wider than a literal in the pattern
            return False
    return len(levels) == len(wanted)


def _readable(username: str, bridge_user: str) -> tuple[str, ...]:
    if username == bridge_user:
        return _BRIDGE_READ
    if (guest := _guest_of(username)) is not None:
        return (f"{ROOT}/+/guest/{guest}/notifications",)
    if (device := parse_device_username(username)) is not None:
        venue, device_id = device
        # The venue's key material (JWKS, revocations), for locks deciding offline.
        return (f"{ROOT}/{venue}/{HUB}/{device_id}/#", f"{ROOT}/{venue}/keys/#")
    return ()


def _writable(username: str, bridge_user: str) -> tuple[str, ...]:
    if username == bridge_user:
        return _BRIDGE_WRITE
    if _guest_of(username) is not None:
        return ()
    if (device := parse_device_username(username)) is not None:
        venue, device_id = device
        own = f"{ROOT}/{venue}/{DEVICE}/{device_id}"
        return (f"{own}/events", f"{own}/status")
    return ()


def allowed(username: str, action: BrokerAction, topic: str, *, bridge_user: str) -> bool:
    """May ``username`` publish to, subscribe to or receive from ``topic``?

    ``subscribe`` takes a filter and allows it only when every topic it could match is
    readable; ``publish`` and ``receive`` take a topic name without wildcards. A
    ``$share/{group}/`` prefix (MQTT 5 shared subscriptions) is judged by its filter.
    """
    if not username or not bridge_user or not topic or "\x00" in topic:
        return False
    if action == "subscribe" and topic.startswith("$share/"):
        _, group, topic = (topic.split("/", 2) + ["", ""])[:3]
        if not group or "+" in group or "#" in group or not topic:
            return False
    if topic.startswith("$"):
        return False  # $SYS and other broker topics are for nobody here
    levels = topic.split("/")
    if action == "subscribe":
        if not _valid_filter(levels):
            return False
        patterns = _readable(username, bridge_user)
    elif action in ("publish", "receive"):
        if "+" in topic or "#" in topic:
            return False
        if action == "publish":
            patterns = _writable(username, bridge_user)
        else:
            patterns = _readable(username, bridge_user)
    else:
        return False
    return any(_covers(p, levels) for p in patterns)
