"""The provisioning sheet's key_anchor: the trust anchor an offline lock starts from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from hub.db import create_db_engine, init_db
from hub.demo import VENUE_ID, seed_demo
from hub.phone_keys import jwks, new_signing_key
from hub.provisioning import write_sheet
from hub.secrets import load_or_create
from simulators.offline_lock import OfflineLock
from simulators.sheet import SheetError, load_sheet, parse_sheet

KEY = new_signing_key(datetime(2026, 1, 1, tzinfo=UTC), timedelta(days=30))


def base() -> dict[str, Any]:
    return {"broker": {"host": "127.0.0.1", "port": 1883},
            "devices": {"lock-101": {"venue": VENUE_ID, "username": "u", "password": "p"}},
            "tags": {}}


def test_the_demo_sheet_carries_the_anchor_a_lock_starts_from(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    init_db(engine)
    seed_demo(engine, datetime.now(UTC))
    with Session(engine) as session:
        write_sheet(tmp_path / "sheet.json", session, load_or_create(tmp_path),
                    {"host": "127.0.0.1", "port": 1883}, key_anchor=jwks([KEY]))
    engine.dispose()
    sheet = load_sheet(tmp_path / "sheet.json")
    assert sheet.key_anchor == jwks([KEY])
    lock = OfflineLock(VENUE_ID, "lock-101", "room-101", anchor=dict(sheet.key_anchor))
    assert lock.jwks == jwks([KEY])


def test_a_sheet_without_an_anchor_still_parses() -> None:
    assert parse_sheet(base()).key_anchor is None


@pytest.mark.parametrize("anchor", [{"keys": []}, {"keys": [{"kty": "oct", "k": "AA"}]},
                                    "keys", {"keys": [{**jwks([KEY])["keys"][0], "d": "AA"}]}])
def test_a_bad_anchor_is_refused(anchor: Any) -> None:
    with pytest.raises(SheetError):
        parse_sheet({**base(), "key_anchor": anchor})
