"""Dead letters: kept without PINs, and only the newest ones."""

from __future__ import annotations

import json
from pathlib import Path

from sqlmodel import Session, func, select

from devices.contract import utcnow
from hub.db import create_db_engine, init_db, session_scope
from hub.models import DeadLetter
from hub.pin_checks import redact_pins
from hub.store import events


def test_only_the_newest_are_kept(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    init_db(engine)
    for n in range(1, 351):
        with session_scope(engine) as session:
            events.record_dead_letter(session=session, topic="t", payload=str(n).encode(),
                                      error="e",
                                      received_at=utcnow(), now=utcnow(), worker="main",
                                      keep=100)
    with Session(engine) as session:
        count = session.exec(select(func.count()).select_from(DeadLetter)).one()
        newest = session.exec(select(func.max(DeadLetter.id))).one()
    assert count <= 200 and newest == 350  # pruned now and then, never the newest
    engine.dispose()


def test_no_pin_survives_however_it_is_written() -> None:
    for payload in (b'{"pin":"1234"}', b'{"\\u0070in": "1234"}', b'{"a": [{"PIN": "1234"}]}',
                    b'garbage "pin" : "1234" more', b'{"pin": "12'):
        kept = redact_pins(payload)
        assert b"1234" not in kept and b"12" not in kept.split(b"pin")[-1][:6], kept
    assert json.loads(redact_pins(b'{"kind":"payment","amount":5}')) == {"kind": "payment",
                                                                         "amount": 5}
