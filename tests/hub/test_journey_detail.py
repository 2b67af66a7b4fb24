"""What staff read about a refused credential (hub.journey_detail), from real verification."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devices.contract import PhoneKeyCredential
from devices.phone import Phone
from devices.phone_key import new_challenge
from hub.journey_detail import MAX_DETAIL, detail_of, log_refused
from hub.models import CredentialKind
from hub.phone_keys import issue_phone_key, jwks, new_signing_key
from hub.presented import (
    CredentialProblem,
    Presented,
    issuer,
    resolve,
    verify_signed_phone_key,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
VENUE, LOCK = "demo-resort", "lock-101"
KEYS = [new_signing_key(NOW - timedelta(days=1), timedelta(days=90))]


def _phone(*, exp: datetime = NOW + timedelta(days=2)) -> Phone:
    phone = Phone.new()
    token, jti = issue_phone_key(
        KEYS, now=NOW - timedelta(hours=1), issuer=issuer(VENUE), venue=VENUE,
        guest_id="guest-01", credential_id="phone-guest-01", zones=["room-101"],
        nbf=NOW - timedelta(hours=1), exp=exp, phone_jwk=phone.public_jwk)
    return phone.hold({"token": token, "jti": jti})


def _verify(credential: PhoneKeyCredential, *, revoked: frozenset[str] = frozenset(),
            at: datetime = NOW, keys: Mapping[str, Any] | None = None) -> Presented:
    return verify_signed_phone_key(credential, jwks=jwks(KEYS) if keys is None else keys,
                                   venue=VENUE, lock_id=LOCK, revoked=revoked, now=at)


def _detail(presented: Presented, *, known: bool = True) -> str | None:
    problem = presented.problem if presented.forged else None
    return detail_of(presented, problem, known=known)


def test_a_genuine_key_needs_no_words() -> None:
    presented = _verify(_phone().answer(new_challenge(), LOCK, NOW))
    assert presented.secure
    assert _detail(presented) is None


def test_a_genuine_key_its_credential_no_longer_carries_is_called_superseded() -> None:
    presented = _verify(_phone().answer(new_challenge(), LOCK, NOW))
    assert (_detail(presented, known=False) or "").startswith("key_superseded: ")


def test_each_failed_check_is_named() -> None:
    phone, thief = _phone(), Phone.new()
    challenge = new_challenge()
    stolen = PhoneKeyCredential(token=phone.token, challenge=challenge,
                                proof=thief.hold({"token": phone.token, "jti": phone.jti})
                                .answer(challenge, LOCK, NOW).proof)
    other_challenge = PhoneKeyCredential(token=phone.token, challenge=new_challenge(),
                                         proof=phone.answer(challenge, LOCK, NOW).proof)
    other_lock = phone.answer(challenge, "lock-102", NOW)
    stale = phone.answer(challenge, LOCK, NOW - timedelta(minutes=5))
    cases = {
        "proof_bad_signature": _verify(stolen),
        "proof_wrong_challenge": _verify(other_challenge),
        "proof_wrong_lock": _verify(other_lock),
        "proof_stale": _verify(stale),
        "key_revoked": _verify(phone.answer(challenge, LOCK, NOW),
                               revoked=frozenset({phone.jti})),
        "key_expired": _verify(_phone(exp=NOW - timedelta(minutes=5)).answer(
            challenge, LOCK, NOW)),
        "key_unknown_kid": _verify(phone.answer(challenge, LOCK, NOW),
                                   keys=jwks([new_signing_key(NOW, timedelta(days=9))])),
        "no_signing_keys": verify_signed_phone_key(
            phone.answer(challenge, LOCK, NOW), jwks=None, venue=VENUE, lock_id=LOCK,
            revoked=(), now=NOW),
    }
    for check, presented in cases.items():
        assert presented.forged, check
        detail = _detail(presented)
        assert detail is not None and detail.startswith(f"{check}: "), (check, detail)


def test_problems_found_after_the_cryptography_are_named_too() -> None:
    signed = Presented(CredentialKind.PHONE_KEY, "jti-1", secure=True, challenge="c" * 22)
    sun = Presented(CredentialKind.WRISTBAND, "04A2", secure=True, counter=7)
    bare_key = Presented(CredentialKind.PHONE_KEY, "pk-guest-01")
    bare_uid = Presented(CredentialKind.WRISTBAND, "04A10000000001")
    assert detail_of(signed, CredentialProblem.REPLAYED, known=True) == (
        "proof_replayed: this lock's challenge was answered before")
    assert (detail_of(sun, CredentialProblem.REPLAYED, known=True) or "").startswith(
        "sun_replayed: ")
    assert (detail_of(bare_key, CredentialProblem.INSECURE, known=True) or "").startswith(
        "bare_key_id: ")
    assert (detail_of(bare_uid, CredentialProblem.INSECURE, known=True) or "").startswith(
        "plain_uid: ")
    assert (detail_of(bare_uid, CredentialProblem.FORGED, known=True) or "").startswith(
        "bare_uid: ")
    assert detail_of(bare_uid, None, known=False) is None  # unknown: the reason says it all


def test_sun_data_that_does_not_verify_is_named() -> None:
    from devices.contract import WristbandSunCredential

    junk = WristbandSunCredential(picc="00" * 16, cmac="00" * 8)
    assert (_detail(resolve(junk, master_key=None)) or "").startswith("no_tag_key: ")
    assert (_detail(resolve(junk, master_key=bytes(16))) or "").startswith("sun_bad_")


def test_the_detail_is_one_bounded_line() -> None:
    presented = Presented(CredentialKind.PHONE_KEY, "", forged=True,
                          problem=CredentialProblem.FORGED, why="key_malformed: a\nb\r\n" * 100)
    detail = detail_of(presented, CredentialProblem.FORGED, known=False)
    assert detail is not None and "\n" not in detail and "\r" not in detail
    assert len(detail) <= MAX_DETAIL


def test_a_token_header_quoted_in_the_detail_cannot_drive_a_terminal_or_carry_a_nul() -> None:
    """PyJWT quotes an unknown `crit` entry word for word; a device chooses it. NUL cannot
    be stored on PostgreSQL (the tap died `internal`), ESC and BEL drive a terminal."""
    import base64
    import json as json_

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = {"alg": "ES256", "crit": ["\x00\x1b[2J\x07\u202e"]}
    credential = PhoneKeyCredential(token=f"{b64(json_.dumps(header).encode())}.e30.c2ln",
                                    challenge=new_challenge(), proof="x.y.z")
    detail = _detail(_verify(credential)) or ""
    assert detail.startswith("key_malformed: ")
    assert all(c.isprintable() for c in detail), repr(detail)
    assert "\\x00" in detail and "\\x1b" in detail and "\\u202e" in detail


@pytest.mark.parametrize(("problem", "level"), [
    (CredentialProblem.FORGED, logging.WARNING),
    (CredentialProblem.REPLAYED, logging.WARNING),
    (CredentialProblem.INSECURE, logging.WARNING),
    (CredentialProblem.REVOKED, logging.WARNING),
    (CredentialProblem.EXPIRED, logging.INFO),
    (CredentialProblem.NOT_YET_VALID, logging.INFO),
])
def test_suspicious_refusals_are_warnings(problem: CredentialProblem, level: int,
                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="hub.credentials"):
        log_refused(problem, "proof_bad_signature: x", device_id=LOCK, event_id="e\n1",
                    kind="phone_key")
    (record,) = caplog.records
    assert record.levelno == level
    message = record.getMessage()
    assert LOCK in message and "proof_bad_signature: x" in message and "\n" not in message
