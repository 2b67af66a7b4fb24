"""Provisioning: what the venue loads onto devices and secure tags before they go live.

- each device's broker username and password (derived from ``broker.key``),
- the Mosquitto password and ACL files for the whole registry,
- each secure wristband's keys (diversified from ``tag-master.key``), as an
  encoding station writes them onto the tag,
- the offline locks' trust anchor: the hub's public phone-key JWKS (not a secret; it is
  what lets a lock tell the hub's signed key material from a forgery).

Everything written here is a secret: files are created 0600, and nothing is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlmodel import Session

from hub import broker_logins
from hub.broker_auth import (
    BrokerAuth,
    bridge_password,
    can_own_credentials,
    device_password,
    device_username,
    guest_password,
    guest_username,
    mosquitto_files,
)
from hub.presented import tag_keys
from hub.secrets import HubSecrets
from hub.store import devices, guests

BRIDGE_USER = "venuehub-bridge"
# Its own label: a client id is not a password and must never equal one.
_CLIENT_ID_LABEL = b"venuehub/v1 bridge client id\x00"
_SHARED_GROUP_LABEL = b"venuehub/v1 bridge shared group\x00"
_API_CLIENT_ID_LABEL = b"venuehub/v1 api client id\x00"


def bridge_client_id(secrets: HubSecrets, worker_name: str) -> str:
    """The bridge's MQTT client id for one hub process (``HUB_WORKER_NAME``).

    Unguessable, so no other client can claim it on a broker that lets anyone in, and
    the same at every restart of that process, so its persistent session (subscriptions
    and the messages queued while it was away) is found again.
    """
    return _client_id(secrets, BRIDGE_USER, _CLIENT_ID_LABEL, worker_name)


def api_client_id(secrets: HubSecrets, name: str) -> str:
    """The MQTT client id of ``hub api``'s publisher (:mod:`hub.publisher`): unguessable
    like the bridge's, and never one of theirs, so it cannot take a worker's session."""
    return _client_id(secrets, "venuehub-api", _API_CLIENT_ID_LABEL, name)


def _client_id(secrets: HubSecrets, prefix: str, label: bytes, name: str) -> str:
    digest = hmac.new(secrets.broker_key, label + name.encode(), hashlib.sha256).hexdigest()
    return f"{prefix}-{name}-{digest[:24]}"


def shared_group(secrets: HubSecrets, group: str) -> str:
    """The shared-subscription group the workers named ``group`` join on the broker.

    A broker hands a share of the traffic to every member of a group, and Mosquitto's ACL
    file does not stop a client joining one: it only withholds the messages it may not
    read, which are then lost. A guessable name (``$share/hubs/...``) would let any device
    or guest login swallow a share of every tap, even from a session left offline. With
    the hub's secret in the name only holders of ``broker.key`` (the workers) can join.
    """
    digest = hmac.new(secrets.broker_key, _SHARED_GROUP_LABEL + group.encode(),
                      hashlib.sha256).hexdigest()
    return f"{group}-{digest[:24]}"


def broker_auth(secrets: HubSecrets) -> BrokerAuth:
    """The broker's view of who may connect: every device, and the hub's bridge."""
    return BrokerAuth(secret=secrets.broker_key, bridge_user=BRIDGE_USER,
                      bridge_password=bridge_password(secrets.broker_key))


def device_sheet(session: Session, secrets: HubSecrets) -> dict[str, dict[str, str]]:
    """device id -> its broker username and password, for every device in service whose
    login is not revoked (at its current generation)."""
    logins = broker_logins.current(session)
    sheet = {}
    for d in devices.live_devices(session=session):
        if not can_own_credentials(d.venue_id):
            continue  # a venue id from before the rule: no login
        username = device_username(d.venue_id, d.id)
        if (generation := logins.get(username, 0)) is None:
            continue
        sheet[d.id] = {"venue": d.venue_id, "username": username,
                       "password": device_password(secrets.broker_key, d.venue_id, d.id,
                                                   generation)}
    return sheet


def guest_sheet(session: Session, secrets: HubSecrets,
                limit: int = 100) -> dict[str, dict[str, str]]:
    """guest id -> their app's broker username and password, for the first ``limit``
    guests by id (the demo's guests; a guest's app gets its own from the venue)."""
    ids = guests.guest_ids(session=session, limit=limit)
    logins = broker_logins.current(session)
    return {g: {"username": guest_username(g),
                "password": guest_password(secrets.broker_key, g,
                                           logins.get(guest_username(g), 0) or 0)}
            for g in ids}


def tag_sheet(secrets: HubSecrets, uids: Iterable[str]) -> dict[str, dict[str, str]]:
    """UID -> the SDM keys an encoding station writes onto that secure band."""
    sheet = {}
    for uid in uids:
        meta, file_key = tag_keys(secrets.tag_master_key, bytes.fromhex(uid))
        sheet[uid.upper()] = {"meta_read_key": meta.hex(), "file_read_key": file_key.hex()}
    return sheet


def secure_band_uids(session: Session) -> list[str]:
    """The UIDs of every secure (SUN) wristband in the registry."""
    return guests.secure_band_uids(session=session)


def mosquitto_config(session: Session, secrets: HubSecrets) -> tuple[str, str]:
    """(password file, ACL file) for a Mosquitto serving this registry."""
    auth = broker_auth(secrets)
    logins_of = [(d.venue_id, d.id) for d in devices.live_devices(session=session)]
    return mosquitto_files(logins_of, secret=secrets.broker_key, bridge_user=auth.bridge_user,
                           bridge_password=auth.bridge_password,
                           guests=guests.guest_ids(session=session),
                           logins=broker_logins.current(session))


def mosquitto_conf(out_dir: Path, *, port: int, tls_port: int, bind: str | None) -> str:
    """A mosquitto.conf for the files ``hub provision mosquitto`` writes into ``out_dir``:
    no anonymous clients, the hub's passwords and ACL, and (``tls_port`` > 0) a TLS
    listener with the venue CA's server certificate. Paths are absolute, so Mosquitto may
    be started from anywhere."""
    root = out_dir.resolve()
    where = f" {bind}" if bind else ""
    lines = [
        "# Written by `hub provision mosquitto`; run it again after adding devices.",
        "per_listener_settings false",  # one password file and ACL for every listener
        "allow_anonymous false",
        f"password_file {root / 'passwd'}",
        f"acl_file {root / 'acl'}",
        # Nagle off: a tap's decision is one small packet, and 40 ms of delay at the door.
        "set_tcp_nodelay true",
        "",
    ]
    if port:
        lines += [f"listener {port}{where}", ""]
    if tls_port:
        lines += [
            f"listener {tls_port}{where}",
            f"cafile {root / 'ca.crt'}",
            f"certfile {root / 'server.crt'}",
            f"keyfile {root / 'server.key'}",
            "tls_version tlsv1.2",  # the oldest allowed; TLS 1.3 is negotiated when offered
            "",
        ]
    return "\n".join(lines)


def write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only (0600 from the first byte)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_sheet(path: Path, session: Session, secrets: HubSecrets,
                broker: dict[str, Any], *, key_anchor: dict[str, Any] | None = None) -> None:
    """The demo's provisioning sheet: broker address, device credentials and tag keys, and
    ``key_anchor``, the hub's public JWKS an offline lock checks key material against."""
    sheet = {"broker": broker, "devices": device_sheet(session, secrets),
             "guests": guest_sheet(session, secrets),
             "tags": tag_sheet(secrets, secure_band_uids(session))}
    if key_anchor is not None:
        sheet["key_anchor"] = key_anchor
    write_private(path, json.dumps(sheet, indent=2) + "\n")
