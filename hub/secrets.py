"""The hub's secrets: created once (``hub init`` or the first ``hub up``), kept 0600.

- ``tag-master.key``  AES-128 master key; secure wristbands' keys are diversified from it
- ``broker.key``      HMAC key from which each device's broker password is derived
- ``api-token.key``   HMAC (HS256) key the REST API's bearer tokens are signed with
Secrets never reach logs or API responses; ``repr()`` of :class:`HubSecrets` hides them.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

_FILES = {"tag_master_key": ("tag-master.key", 16), "broker_key": ("broker.key", 32),
          "api_token_key": ("api-token.key", 32)}


@dataclass(frozen=True)
class HubSecrets:
    """The hub's keys, loaded from the data directory."""

    tag_master_key: bytes = field(repr=False)
    broker_key: bytes = field(repr=False)
    api_token_key: bytes = field(repr=False)


def _write_new(path: Path, size: int) -> None:
    # O_EXCL: never overwrite a key; 0600 from the first byte, not chmod afterwards.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(size) + "\n")


def private_dir(path: Path) -> None:
    """Create the data directory 0700, or make an existing one of ours 0700: it holds the
    database, the secrets and the provisioning sheets."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        path.chmod(0o700)


def load_or_create(data_dir: Path) -> HubSecrets:
    """Read the secrets under ``data_dir/secrets``, creating any that are missing."""
    folder = data_dir / "secrets"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    values: dict[str, bytes] = {}
    for name, (filename, size) in _FILES.items():
        path = folder / filename
        if not path.exists():
            _write_new(path, size)
        if path.stat().st_mode & 0o077:
            raise PermissionError(f"{path} is readable by others: chmod 600 it")
        values[name] = bytes.fromhex(path.read_text().strip())
        if len(values[name]) != size:
            raise ValueError(f"{path} does not hold a {size}-byte key")
    return HubSecrets(**values)
