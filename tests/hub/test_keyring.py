"""The hub's signed key material (hub.keyring), read back as a lock reads it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from devices.key_material import KeyMaterialError, KeyState, Reason, verify
from devices.topics import keys_topic
from hub import keyring
from hub.db import session_scope
from hub.demo import VENUE_ID
from hub.models import Credential, CredentialStatus, utcnow
from hub.phone_keys import SigningKey, jwks, new_signing_key, rotate
from tests.utils.demo_db import demo_sqlite

NOW = utcnow()
LIFETIME, OVERLAP = timedelta(days=30), timedelta(days=14)


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    engine = demo_sqlite(request, tmp_path / "hub.db", now=NOW)
    yield engine
    engine.dispose()


def published(engine: Engine, keys: list[SigningKey], at: datetime = NOW) -> dict[str, bytes]:
    with session_scope(engine) as session:
        messages = dict(keyring.key_material(session, keys, at))
    return {name: messages[keys_topic(VENUE_ID, name)] for name in ("jwks", "revocations")}


def test_what_the_hub_publishes_verifies_against_its_jwks_and_seq_grows(
        engine: Engine) -> None:
    keys = [new_signing_key(NOW - timedelta(days=1), LIFETIME)]
    state = KeyState.from_anchor(VENUE_ID, jwks(keys))
    first = published(engine, keys)
    state = state.accept("jwks", first["jwks"]).accept("revocations", first["revocations"])
    with session_scope(engine) as session:
        phone = session.get(Credential, "phone-guest-01")
        assert phone is not None
        phone.key_jti, phone.status = "jti-1", CredentialStatus.REVOKED
    second = published(engine, keys)
    state = state.accept("revocations", second["revocations"])
    assert state.revoked == {"jti-1"} and state.seqs == {"jwks": 1, "revocations": 2}
    # The first list again, replayed onto the retained topic: a rollback.
    with pytest.raises(KeyMaterialError) as caught:
        state.accept("revocations", first["revocations"])
    assert caught.value.reason is Reason.ROLLBACK
    # Readers from before signing still find the unsigned members.
    assert json.loads(second["revocations"])["revoked"] == ["jti-1"]


def test_the_rest_api_serves_the_last_seq_without_bumping_it(engine: Engine) -> None:
    keys = [new_signing_key(NOW - timedelta(days=1), LIFETIME)]
    published(engine, keys)
    with session_scope(engine) as session:
        served = [keyring.served(session, keys, venue=VENUE_ID, kind="revocations", now=NOW)
                  for _ in range(3)]
    seqs = {verify(doc, kind="revocations", venue=VENUE_ID, trusted=jwks(keys)).seq
            for doc in served}
    assert seqs == {1}


def test_a_rotated_jwks_is_signed_by_the_key_locks_already_trust(engine: Engine) -> None:
    old = [new_signing_key(NOW - LIFETIME, LIFETIME + OVERLAP)]
    anchor = jwks(old)  # what the lock was provisioned with
    rotated = rotate(old, NOW, LIFETIME, OVERLAP)  # the new key signs phone keys from now
    assert len(rotated) == 2
    state = KeyState.from_anchor(VENUE_ID, anchor)
    state = state.accept("jwks", published(engine, rotated)["jwks"])
    assert state.jwks == jwks(rotated)
    # Once the old key has expired, the new one signs, and the lock follows.
    later = NOW + OVERLAP + timedelta(days=1)
    state = state.accept("revocations", published(engine, rotated, later)["revocations"])
    assert state.seqs["revocations"] == 2


def test_without_a_valid_signing_key_nothing_is_signed(engine: Engine) -> None:
    expired = [new_signing_key(NOW - timedelta(days=90), LIFETIME)]
    doc = published(engine, expired)["revocations"]
    assert "jws" not in json.loads(doc)
    with pytest.raises(KeyMaterialError):
        KeyState.from_anchor(VENUE_ID, jwks([new_signing_key(NOW, LIFETIME)])).accept(
            "revocations", doc)
