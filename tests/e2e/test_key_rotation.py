"""Signing keys rotated by another process of the fleet are followed without a restart."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import httpx

from hub.demo import VENUE_ID
from hub.models import utcnow
from hub.phone_keys import load_keys, rotate, save_keys
from hub.server import Hub


def test_a_hub_follows_keys_another_process_rotated(running_hub: Hub) -> None:
    path = running_hub.settings.data_dir / "secrets" / "phone-signing-keys.json"
    before = {k.kid for k in load_keys(path)}
    # What another process's start does when the keys near their end: a new signing key.
    time.sleep(0.01)  # a different mtime on coarse file systems
    save_keys(path, rotate(load_keys(path), utcnow(), timedelta(days=90), timedelta(days=7)))
    new = {k.kid for k in load_keys(path)} - before
    assert len(new) == 1
    assert running_hub.key_watch is not None and running_hub.key_watch.check()
    bridge = running_hub.bridge
    assert bridge is not None and bridge.trust.jwks is not None
    assert new <= {k["kid"] for k in bridge.trust.jwks["keys"]}  # taps verify against it
    settings = running_hub.settings
    served = httpx.get(f"http://{settings.http_host}:{settings.http_port}/api/v1/venues/"
                       f"{VENUE_ID}/jwks").json()
    assert new <= {k["kid"] for k in served["keys"]}  # what the API signs with and serves
    assert not running_hub.key_watch.check()  # unchanged since: nothing to do


def test_a_broken_key_file_keeps_the_keys_in_use(running_hub: Hub, tmp_path: Path) -> None:
    path = running_hub.settings.data_dir / "secrets" / "phone-signing-keys.json"
    kept = [k.kid for k in running_hub.signing_keys]
    path.write_text("{half a file")
    assert running_hub.key_watch is not None and not running_hub.key_watch.check()
    assert [k.kid for k in running_hub.signing_keys] == kept
