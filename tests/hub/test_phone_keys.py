"""The hub's phone-key signer (hub.phone_keys): issuing, JWKS, rotation, the key file.

Every issued key is checked with the lock's verifier (devices.phone_key) at a fixed
clock, with a real proof of possession from a simulated phone.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import ECAlgorithm

from devices.phone_key import (
    KEY_TYP,
    PhoneKeyError,
    Reason,
    VerifiedKey,
    make_proof,
    new_challenge,
    phone_keypair,
    verify_phone_key,
)
from hub.phone_keys import (
    SigningKey,
    current_signing_key,
    issue_phone_key,
    jwks,
    load_keys,
    new_signing_key,
    rotate,
    save_keys,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ISSUER = "venuehub:demo-resort"
VENUE = "demo-resort"
LOCK = "lock-101"
DAY = timedelta(days=1)
LIFETIME = 30 * DAY
OVERLAP = 7 * DAY  # at least the longest stay

PHONE, PHONE_JWK = phone_keypair()


def issue(keys: Sequence[SigningKey], *, now: datetime = NOW, nbf: datetime | None = None,
          exp: datetime | None = None, **overrides: Any) -> tuple[str, str]:
    kwargs: dict[str, Any] = {
        "now": now, "issuer": ISSUER, "venue": VENUE, "guest_id": "guest-01",
        "credential_id": "pk-guest-01", "zones": ["room-101"],
        "nbf": now if nbf is None else nbf, "exp": now + 3 * DAY if exp is None else exp,
        "phone_jwk": PHONE_JWK,
    }
    kwargs.update(overrides)
    return issue_phone_key(keys, **kwargs)


def tap(token: str, jti: str, keys: Sequence[SigningKey], at: datetime,
        revoked: Sequence[str] = ()) -> VerifiedKey:
    """One tap at ``at``: the lock's challenge, the phone's proof, the lock's verdict."""
    challenge = new_challenge()
    proof = make_proof(PHONE, challenge=challenge, lock_id=LOCK, key_jti=jti, now=at)
    return verify_phone_key(
        token, proof, jwks=jwks(keys), issuer=ISSUER, audience=VENUE, challenge=challenge,
        lock_id=LOCK, revoked=revoked, now=at,
    )


@pytest.fixture
def keys() -> list[SigningKey]:
    return rotate([], NOW - DAY, LIFETIME, OVERLAP)


@pytest.fixture(params=[0, 0o022, 0o277])
def any_umask(request: pytest.FixtureRequest) -> Iterator[None]:
    # umask 0: a careless open() would make the key file world-readable; 0o277: the
    # owner could not write it back. The mode must be 0600 whatever the umask.
    old = os.umask(request.param)
    try:
        yield
    finally:
        os.umask(old)


# ---------------------------------------------------------------- issuing


def test_an_issued_key_verifies_at_the_lock(keys: list[SigningKey]) -> None:
    token, jti = issue(keys, zones=["room-101", "park"], exp=NOW + 3 * DAY)
    result = tap(token, jti, keys, NOW + DAY)
    assert result == VerifiedKey(guest_id="guest-01", credential_id="pk-guest-01",
                                 zones=("room-101", "park"), jti=jti, exp=NOW + 3 * DAY)


def test_the_token_carries_the_designed_header_and_claims(keys: list[SigningKey]) -> None:
    token, jti = issue(keys, nbf=NOW - DAY, exp=NOW + 2 * DAY)
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": keys[0].kid, "typ": KEY_TYP}
    body = jwt.decode(token, keys[0].private_key.public_key(), algorithms=["ES256"],
                      audience=VENUE, options={"verify_exp": False, "verify_nbf": False})
    assert body == {
        "iss": ISSUER, "aud": VENUE, "sub": "guest-01", "cid": "pk-guest-01",
        "scope": {"zones": ["room-101"]}, "nbf": int((NOW - DAY).timestamp()),
        "exp": int((NOW + 2 * DAY).timestamp()), "iat": int(NOW.timestamp()), "jti": jti,
        "cnf": {"jwk": PHONE_JWK},
    }


def test_every_key_gets_its_own_jti(keys: list[SigningKey]) -> None:
    assert len({issue(keys)[1] for _ in range(20)}) == 20


def test_a_revoked_issued_key_is_refused(keys: list[SigningKey]) -> None:
    token, jti = issue(keys)
    with pytest.raises(PhoneKeyError) as caught:
        tap(token, jti, keys, NOW, revoked=[jti])
    assert caught.value.reason == Reason.KEY_REVOKED


def test_the_newest_currently_valid_key_signs() -> None:
    old = new_signing_key(NOW - 20 * DAY, 60 * DAY)
    newest = new_signing_key(NOW - DAY, 60 * DAY)
    future = new_signing_key(NOW + DAY, 60 * DAY)  # published early, not signing yet
    expired = new_signing_key(NOW - 90 * DAY, 30 * DAY)
    keys = [future, newest, old, expired]
    token, _ = issue(keys)
    assert jwt.get_unverified_header(token)["kid"] == newest.kid
    assert current_signing_key(keys, NOW) is newest


def test_no_valid_signing_key_means_no_phone_key() -> None:
    with pytest.raises(ValueError, match="rotate"):
        issue([new_signing_key(NOW + DAY, LIFETIME)])
    with pytest.raises(ValueError, match="rotate"):
        issue([])


def test_a_stay_outliving_the_signing_key_is_refused() -> None:
    # It would stop verifying mid-stay, once its signing key leaves the JWKS.
    short = new_signing_key(NOW - DAY, 2 * DAY)
    with pytest.raises(ValueError, match="not_after"):
        issue([short], exp=NOW + 3 * DAY)


@pytest.mark.parametrize("override", [
    {"zones": []},
    {"zones": "room-101"},
    {"zones": ["room-101", ""]},
    {"guest_id": ""},
    {"venue": ""},
    {"nbf": NOW + DAY, "exp": NOW},
    {"exp": datetime(2026, 11, 25, 10, 0)},  # naive
    {"phone_jwk": {"kty": "oct", "k": "c2VjcmV0"}},
    {"phone_jwk": {**PHONE_JWK, "crv": "P-384"}},
    {"phone_jwk": {**PHONE_JWK, "x": PHONE_JWK["y"]}},  # not a point on the curve
    {"phone_jwk": ECAlgorithm.to_jwk(PHONE, as_dict=True)},  # the phone's private key
])
def test_bad_issue_requests_are_refused(keys: list[SigningKey], override: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        issue(keys, **override)


def test_only_the_public_members_of_the_phone_jwk_are_signed(keys: list[SigningKey]) -> None:
    token, _ = issue(keys, phone_jwk={**PHONE_JWK, "kid": "phone-1", "alg": "HS256"})
    body = jwt.decode(token, options={"verify_signature": False})
    assert body["cnf"] == {"jwk": PHONE_JWK}


# ---------------------------------------------------------------- rotation


def test_a_key_issued_before_rotation_verifies_during_the_overlap_only() -> None:
    t0 = NOW
    keys1 = rotate([], t0, LIFETIME, OVERLAP)
    old = keys1[0]
    assert (old.not_before, old.not_after) == (t0, t0 + LIFETIME + OVERLAP)
    # Issued an hour before the rotation, for a stay running into the overlap.
    issued_at = t0 + LIFETIME - timedelta(hours=1)
    token, jti = issue(keys1, now=issued_at, exp=issued_at + 5 * DAY)

    keys2 = rotate(keys1, t0 + LIFETIME, LIFETIME, OVERLAP)
    new = keys2[-1]
    assert [k.kid for k in keys2] == [old.kid, new.kid] and new.kid != old.kid
    assert [k["kid"] for k in jwks(keys2)["keys"]] == [old.kid, new.kid]
    # During the overlap: the old key still verifies, the new one signs.
    assert tap(token, jti, keys2, t0 + LIFETIME + 4 * DAY).jti == jti
    fresh, _ = issue(keys2, now=t0 + LIFETIME + DAY)
    assert jwt.get_unverified_header(fresh)["kid"] == new.kid
    # A JWKS without the old key (as an early drop would give) refuses the old token.
    with pytest.raises(PhoneKeyError) as caught:
        tap(token, jti, [new], t0 + LIFETIME + 4 * DAY)
    assert caught.value.reason == Reason.KEY_UNKNOWN_KID

    # From the old key's not_after on, rotation drops it and the token is refused.
    keys3 = rotate(keys2, old.not_after, LIFETIME, OVERLAP)
    assert old.kid not in {k["kid"] for k in jwks(keys3)["keys"]}
    assert new.kid in {k.kid for k in keys3}
    with pytest.raises(PhoneKeyError) as caught:
        tap(token, jti, keys3, old.not_after)
    assert caught.value.reason == Reason.KEY_UNKNOWN_KID


def test_rotation_keeps_unexpired_keys_and_drops_expired_ones() -> None:
    expired = new_signing_key(NOW - 40 * DAY, 30 * DAY)
    ending = new_signing_key(NOW - 29 * DAY, 30 * DAY)
    keys = rotate([ending, expired], NOW, LIFETIME, OVERLAP)
    assert [k.kid for k in keys[:-1]] == [ending.kid]
    assert keys[-1].not_before == NOW and keys[-1].not_after == NOW + LIFETIME + OVERLAP
    assert ending.not_after == NOW + DAY  # kept as it was, not shortened or extended


# ---------------------------------------------------------------- JWKS and secrecy


def _private_scalar(key: SigningKey) -> str:
    return str(ECAlgorithm.to_jwk(key.private_key, as_dict=True)["d"])


def _pem(key: SigningKey) -> str:
    return key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_jwks_has_public_es256_signing_keys_only(keys: list[SigningKey]) -> None:
    keys = rotate(keys, NOW, LIFETIME, OVERLAP)
    published = jwks(keys)
    assert [set(k) for k in published["keys"]] == [
        {"kty", "crv", "x", "y", "kid", "alg", "use"}
    ] * 2
    for entry, key in zip(published["keys"], keys, strict=True):
        assert (entry["kty"], entry["crv"], entry["alg"], entry["use"]) == (
            "EC", "P-256", "ES256", "sig")
        assert entry["kid"] == key.kid
        text = json.dumps(published)
        assert _private_scalar(key) not in text
        assert "PRIVATE" not in text


def test_the_private_key_is_not_in_repr(keys: list[SigningKey]) -> None:
    key = keys[0]
    for shown in (repr(key), str(key), repr(keys), f"{key}"):
        assert _private_scalar(key) not in shown
        assert "PRIVATE" not in shown and "private_key" not in shown
        assert key.kid in shown


def test_kids_are_distinct_and_key_bound() -> None:
    a, b = new_signing_key(NOW, LIFETIME), new_signing_key(NOW, LIFETIME)
    assert a.kid != b.kid
    assert len(a.kid) == 43  # base64url of a SHA-256 thumbprint


# ---------------------------------------------------------------- the key file


def test_the_key_file_is_created_0600(tmp_path: Path, keys: list[SigningKey],
                                      any_umask: None) -> None:
    path = tmp_path / "phone-signing-keys.json"
    save_keys(path, keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_saving_over_a_readable_file_makes_it_0600(tmp_path: Path, keys: list[SigningKey],
                                                  any_umask: None) -> None:
    path = tmp_path / "keys.json"
    path.write_text("{}")
    path.chmod(0o644)
    save_keys(path, keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keys_survive_a_save_and_load(tmp_path: Path, keys: list[SigningKey]) -> None:
    keys = rotate(keys, NOW, LIFETIME, OVERLAP)
    path = tmp_path / "keys.json"
    save_keys(path, keys)
    loaded = load_keys(path)
    assert [(k.kid, k.not_before, k.not_after) for k in loaded] == [
        (k.kid, k.not_before, k.not_after) for k in keys
    ]
    assert jwks(loaded) == jwks(keys)
    # Same key material: a key signed after loading verifies with the JWKS from before.
    token, jti = issue(loaded)
    assert tap(token, jti, keys, NOW).jti == jti
    # The file does hold the private keys (that is why it is 0600).
    assert _pem(keys[0]) in json.loads(path.read_text())["keys"][0]["private_key"]


@pytest.mark.parametrize("content", ["", "[]", "{}", '{"version": 2, "keys": []}',
                                     '{"version": 1, "keys": [{"kid": "k"}]}',
                                     ('{"version": 1, "keys": [{"kid": "k", "not_before": "x",'
                                      ' "not_after": "y", "private_key": "nope"}]}')])
def test_a_broken_key_file_is_a_value_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ValueError):
        load_keys(path)
