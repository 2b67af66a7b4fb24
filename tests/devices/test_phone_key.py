"""Phone keys and the tap challenge (devices.phone_key), as a lock verifies them offline.

Tokens are signed here with PyJWT and a test hub key, not with hub.phone_keys, so
every claim and header can be bent; forgeries PyJWT refuses to produce (``alg:
none``, HS256 keyed with the public key) are assembled by hand. The clock is fixed.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import devices.phone_key as phone_key_module
from devices.phone_key import (
    CHALLENGE_BYTES,
    KEY_TYP,
    MAX_TOKEN_CHARS,
    PROOF_TYP,
    PhoneKeyError,
    Reason,
    VerifiedKey,
    make_proof,
    new_challenge,
    phone_keypair,
    public_jwk,
    verify_phone_key,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ISSUER = "venuehub:demo-resort"
VENUE = "demo-resort"
LOCK = "lock-101"
JTI = "jti-guest-01-a"
KID = "hub-key-1"
CHALLENGE = "q3JvbXBOb3RSYW5kb20xMg"  # fixed so failures are reproducible

HUB_KEY = ec.generate_private_key(ec.SECP256R1())
JWKS: dict[str, Any] = {"keys": [{**public_jwk(HUB_KEY), "kid": KID, "alg": "ES256", "use": "sig"}]}
PHONE, PHONE_JWK = phone_keypair()

_DROP = object()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def ts(value: datetime) -> int:
    return int(value.timestamp())


def claims(**overrides: Any) -> dict[str, Any]:
    """The claims of a valid phone key for guest-01's room, with overrides (_DROP removes)."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": VENUE,
        "sub": "guest-01",
        "cid": "pk-guest-01",
        "scope": {"zones": ["room-101", "park"]},
        "nbf": ts(NOW - timedelta(days=1)),
        "exp": ts(NOW + timedelta(days=2)),
        "iat": ts(NOW - timedelta(days=1)),
        "jti": JTI,
        "cnf": {"jwk": PHONE_JWK},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


def sign(payload: dict[str, Any] | None = None, *, key: ec.EllipticCurvePrivateKey = HUB_KEY,
         **headers: Any) -> str:
    """A phone key signed ES256 by ``key`` with the usual header, header fields overridable."""
    header: dict[str, Any] = {"kid": KID, "typ": KEY_TYP, **headers}
    return jwt.encode(claims() if payload is None else payload, key, algorithm="ES256",
                      headers=header)


def proof(*, key: ec.EllipticCurvePrivateKey = PHONE, challenge: str = CHALLENGE,
          lock_id: str = LOCK, key_jti: str = JTI, now: datetime = NOW) -> str:
    return make_proof(key, challenge=challenge, lock_id=lock_id, key_jti=key_jti, now=now)


def verify(token: str, proof_: str | None, **overrides: Any) -> VerifiedKey:
    kwargs: dict[str, Any] = {
        "jwks": JWKS, "issuer": ISSUER, "audience": VENUE, "challenge": CHALLENGE,
        "lock_id": LOCK, "revoked": (), "now": NOW,
    }
    kwargs.update(overrides)
    return verify_phone_key(token, proof_, **kwargs)


def refused(reason: Reason, token: str, proof_: str | None, **overrides: Any) -> PhoneKeyError:
    with pytest.raises(PhoneKeyError) as caught:
        verify(token, proof_, **overrides)
    assert caught.value.reason == reason, caught.value
    return caught.value


# ---------------------------------------------------------------- accepted


def test_a_valid_key_and_proof_verify() -> None:
    result = verify(sign(), proof())
    assert result == VerifiedKey(
        guest_id="guest-01",
        credential_id="pk-guest-01",
        zones=("room-101", "park"),
        jti=JTI,
        exp=datetime.fromtimestamp(ts(NOW + timedelta(days=2)), UTC),
    )


def test_the_same_key_opens_again_with_a_fresh_proof_for_the_next_challenge() -> None:
    token = sign()
    for _ in range(3):
        challenge = new_challenge()
        assert verify(token, proof(challenge=challenge), challenge=challenge).jti == JTI


def test_reasons_are_the_documented_strings() -> None:
    assert {r.value for r in Reason} == {
        "key_malformed", "key_bad_alg", "key_unknown_kid", "key_bad_signature", "key_expired",
        "key_not_yet_valid", "key_wrong_audience", "key_wrong_issuer", "key_revoked",
        "proof_missing", "proof_bad_signature", "proof_wrong_challenge", "proof_wrong_lock",
        "proof_stale", "proof_wrong_key",
    }
    # A StrEnum: it is its string on the wire and in logs.
    assert str(Reason.KEY_EXPIRED) == "key_expired"
    assert json.dumps({"reason": Reason.KEY_EXPIRED}) == '{"reason": "key_expired"}'


# ---------------------------------------------------------------- the phone key


def test_an_expired_key_is_refused() -> None:
    token = sign(claims(exp=ts(NOW - timedelta(seconds=31))))
    refused(Reason.KEY_EXPIRED, token, proof())


def test_expiry_has_leeway_and_leeway_is_a_parameter() -> None:
    token = sign(claims(exp=ts(NOW - timedelta(seconds=29))))
    assert verify(token, proof()).jti == JTI  # within the default 30 s
    refused(Reason.KEY_EXPIRED, token, proof(), leeway_s=0)


def test_a_key_before_its_stay_is_refused() -> None:
    token = sign(claims(nbf=ts(NOW + timedelta(seconds=31))))
    refused(Reason.KEY_NOT_YET_VALID, token, proof())
    early = sign(claims(nbf=ts(NOW + timedelta(seconds=29))))
    assert verify(early, proof()).jti == JTI
    refused(Reason.KEY_NOT_YET_VALID, early, proof(), leeway_s=0)


def test_a_key_issued_in_the_future_is_refused() -> None:
    token = sign(claims(iat=ts(NOW + timedelta(hours=1))))
    refused(Reason.KEY_NOT_YET_VALID, token, proof())


def test_times_follow_the_now_argument_not_the_wall_clock() -> None:
    # The stay is in 2026: a verifier reading the wall clock would decide otherwise.
    token = sign(claims(nbf=ts(NOW), exp=ts(NOW + timedelta(hours=1))))
    later = NOW + timedelta(hours=2)
    refused(Reason.KEY_EXPIRED, token, proof(now=later), now=later)
    earlier = NOW - timedelta(hours=2)
    refused(Reason.KEY_NOT_YET_VALID, token, proof(now=earlier), now=earlier)


def test_a_key_for_another_venue_is_refused() -> None:
    refused(Reason.KEY_WRONG_AUDIENCE, sign(claims(aud="other-resort")), proof())


def test_an_audience_list_is_refused_even_when_it_names_this_venue() -> None:
    refused(Reason.KEY_WRONG_AUDIENCE, sign(claims(aud=[VENUE, "other-resort"])), proof())


def test_a_key_from_another_issuer_is_refused() -> None:
    refused(Reason.KEY_WRONG_ISSUER, sign(claims(iss="venuehub:other-resort")), proof())


def test_an_unknown_kid_is_refused() -> None:
    refused(Reason.KEY_UNKNOWN_KID, sign(kid="hub-key-2"), proof())


def test_a_key_without_kid_is_refused() -> None:
    token = jwt.encode(claims(), HUB_KEY, algorithm="ES256", headers={"typ": KEY_TYP})
    refused(Reason.KEY_UNKNOWN_KID, token, proof())


def test_a_kid_naming_a_non_es256_jwks_entry_is_refused() -> None:
    # An HMAC key (kty oct) filed under our kid must never be used, whatever the token says.
    secret = b64(b"0123456789abcdef0123456789abcdef")
    bad_jwks = {"keys": [{"kty": "oct", "k": secret, "kid": KID, "alg": "HS256"}]}
    refused(Reason.KEY_UNKNOWN_KID, sign(), proof(), jwks=bad_jwks)


@pytest.mark.parametrize("extra", [{"use": "enc"}, {"alg": "ES384"}, {"alg": "ECDH-ES"}])
def test_a_kid_naming_a_key_not_meant_for_es256_signatures_is_refused(
    extra: dict[str, str],
) -> None:
    other_use = {"keys": [{**JWKS["keys"][0], **extra}]}
    refused(Reason.KEY_UNKNOWN_KID, sign(), proof(), jwks=other_use)


def test_a_key_signed_by_someone_else_under_our_kid_is_refused() -> None:
    impostor = ec.generate_private_key(ec.SECP256R1())
    refused(Reason.KEY_BAD_SIGNATURE, sign(key=impostor), proof())


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none_is_refused(alg: str) -> None:
    token = f"{b64json({'alg': alg, 'typ': KEY_TYP, 'kid': KID})}.{b64json(claims())}."
    refused(Reason.KEY_BAD_ALG, token, proof())


def test_alg_none_without_kid_or_typ_is_refused() -> None:
    token = f"{b64json({'alg': 'none'})}.{b64json(claims())}."
    refused(Reason.KEY_BAD_ALG, token, proof())


def test_a_header_without_alg_is_refused() -> None:
    token = f"{b64json({'typ': KEY_TYP, 'kid': KID})}.{b64json(claims())}.{b64(b'x' * 64)}"
    refused(Reason.KEY_BAD_ALG, token, proof())


def test_hs256_keyed_with_the_public_key_is_refused() -> None:
    # The classic confusion: a verifier that lets the token pick HS256 would use the
    # (public) PEM it holds as the HMAC secret, and this forgery would pass.
    public_pem = HUB_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = claims(scope={"zones": ["room-101", "room-102", "vip-lounge"]})
    signing_input = f"{b64json({'alg': 'HS256', 'typ': KEY_TYP, 'kid': KID})}.{b64json(forged)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(mac)}"
    # The forgery is a genuine HS256 token under that secret ...
    head, body, sig = token.split(".")
    assert hmac.compare_digest(
        unb64(sig), hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    )
    # ... and refused, also when the JWKS entry carries no alg.
    refused(Reason.KEY_BAD_ALG, token, proof())
    bare = {"keys": [{**public_jwk(HUB_KEY), "kid": KID}]}
    refused(Reason.KEY_BAD_ALG, token, proof(), jwks=bare)


@pytest.mark.parametrize("alg", ["HS256", "ES384", "ES512", "RS256", "PS256", "EdDSA", "es256"])
def test_every_other_alg_is_refused(alg: str) -> None:
    token = f"{b64json({'alg': alg, 'typ': KEY_TYP, 'kid': KID})}.{b64json(claims())}.{b64(b's')}"
    refused(Reason.KEY_BAD_ALG, token, proof())


def test_a_flipped_signature_byte_is_refused() -> None:
    head, body, sig = sign().split(".")
    raw = bytearray(unb64(sig))
    raw[10] ^= 0x01
    refused(Reason.KEY_BAD_SIGNATURE, f"{head}.{body}.{b64(bytes(raw))}", proof())


def test_a_changed_claim_breaks_the_signature() -> None:
    head, _, sig = sign().split(".")
    more_zones = b64json(claims(scope={"zones": ["room-101", "park", "vip-lounge"]}))
    refused(Reason.KEY_BAD_SIGNATURE, f"{head}.{more_zones}.{sig}", proof())


def test_a_key_embedded_in_the_header_is_ignored() -> None:
    # RFC 7515 `jwk` header: an attacker's own key travelling with the token must not count.
    attacker = ec.generate_private_key(ec.SECP256R1())
    token = sign(key=attacker, jwk=public_jwk(attacker))
    refused(Reason.KEY_BAD_SIGNATURE, token, proof())


def test_a_revoked_key_is_refused() -> None:
    refused(Reason.KEY_REVOKED, sign(), proof(), revoked={JTI})
    assert verify(sign(), proof(), revoked={"some-other-jti"}).jti == JTI


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b", "a.b.c", "x" * (MAX_TOKEN_CHARS + 1)])
def test_garbage_is_a_malformed_key(token: str) -> None:
    refused(Reason.KEY_MALFORMED, token, proof())


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "cid", "scope", "nbf", "exp", "iat",
                                   "jti", "cnf"])
def test_a_key_missing_a_claim_is_refused(claim: str) -> None:
    error = refused(Reason.KEY_MALFORMED, sign(claims(**{claim: _DROP})), proof())
    assert claim in str(error)


@pytest.mark.parametrize("override", [
    {"sub": 7},
    {"cid": ""},
    {"jti": ""},
    {"scope": ["room-101"]},
    {"scope": {"zones": "room-101"}},
    {"scope": {"zones": ["room-101", 3]}},
    {"cnf": {"jwk": {"kty": "oct", "k": "c2VjcmV0"}}},
    {"exp": True},
    {"nbf": "yesterday"},
])
def test_an_ill_typed_claim_is_refused(override: dict[str, Any]) -> None:
    refused(Reason.KEY_MALFORMED, sign(claims(**override)), proof())


def test_a_cnf_carrying_a_private_key_is_refused() -> None:
    private_jwk = jwt.algorithms.ECAlgorithm.to_jwk(PHONE, as_dict=True)
    assert "d" in private_jwk
    refused(Reason.KEY_MALFORMED, sign(claims(cnf={"jwk": private_jwk})), proof())


def test_a_token_of_another_type_is_refused() -> None:
    refused(Reason.KEY_MALFORMED, sign(typ="JWT"), proof())
    refused(Reason.KEY_MALFORMED, sign(typ=PROOF_TYP), proof())


# ---------------------------------------------------------------- the proof


@pytest.mark.parametrize("missing", [None, ""])
def test_a_key_without_proof_is_refused(missing: str | None) -> None:
    refused(Reason.PROOF_MISSING, sign(), missing)


def test_a_proof_signed_by_another_phone_is_refused() -> None:
    thief, _ = phone_keypair()
    refused(Reason.PROOF_BAD_SIGNATURE, sign(), proof(key=thief))


def test_a_captured_key_and_proof_are_refused_at_the_next_tap() -> None:
    # Tap 1: the lock's challenge, the phone's answer; someone records both.
    first = new_challenge()
    token, captured = sign(), proof(challenge=first)
    assert verify(token, captured, challenge=first).guest_id == "guest-01"
    # Tap 2, seconds later: a fresh challenge, the recording replayed.
    second = new_challenge()
    assert second != first
    refused(Reason.PROOF_WRONG_CHALLENGE, token, captured, challenge=second,
            now=NOW + timedelta(seconds=5))


def test_a_proof_for_another_lock_is_refused() -> None:
    refused(Reason.PROOF_WRONG_LOCK, sign(), proof(lock_id="lock-102"))


@pytest.mark.parametrize("skew_s", [-31, 31, -3600])
def test_a_stale_or_future_proof_is_refused(skew_s: int) -> None:
    refused(Reason.PROOF_STALE, sign(), proof(now=NOW + timedelta(seconds=skew_s)))


@pytest.mark.parametrize("skew_s", [-30, 30])
def test_a_proof_within_the_window_is_accepted(skew_s: int) -> None:
    assert verify(sign(), proof(now=NOW + timedelta(seconds=skew_s))).jti == JTI


def test_a_proof_for_another_phone_key_is_refused() -> None:
    refused(Reason.PROOF_WRONG_KEY, sign(), proof(key_jti="jti-guest-01-b"))


def test_the_phone_key_itself_is_not_a_proof() -> None:
    token = sign()
    refused(Reason.PROOF_BAD_SIGNATURE, token, token)


def test_a_proof_with_alg_none_is_refused() -> None:
    body = {"nonce": CHALLENGE, "lock": LOCK, "iat": ts(NOW), "jti": "p1", "key": JTI}
    forged = f"{b64json({'alg': 'none', 'typ': PROOF_TYP})}.{b64json(body)}."
    refused(Reason.PROOF_BAD_SIGNATURE, sign(), forged)


def test_a_proof_of_another_type_is_refused() -> None:
    body = {"nonce": CHALLENGE, "lock": LOCK, "iat": ts(NOW), "jti": "p1", "key": JTI}
    untyped = jwt.encode(body, PHONE, algorithm="ES256")  # typ "JWT"
    refused(Reason.PROOF_BAD_SIGNATURE, sign(), untyped)


def test_a_proof_with_a_flipped_byte_is_refused() -> None:
    head, body, sig = proof().split(".")
    raw = bytearray(unb64(sig))
    raw[0] ^= 0x80
    refused(Reason.PROOF_BAD_SIGNATURE, sign(), f"{head}.{body}.{b64(bytes(raw))}")


def test_the_proof_is_checked_before_revocation() -> None:
    # Only the phone holding the key learns that it was revoked.
    refused(Reason.PROOF_MISSING, sign(), None, revoked={JTI})


# ---------------------------------------------------------------- helpers and callers


def test_new_challenge_is_16_random_bytes_base64url() -> None:
    challenges = {new_challenge() for _ in range(100)}
    assert len(challenges) == 100
    for c in challenges:
        assert "=" not in c and "+" not in c and "/" not in c
        assert len(unb64(c)) == CHALLENGE_BYTES


def test_phone_keypair_gives_a_public_p256_jwk() -> None:
    private_key, jwk_dict = phone_keypair()
    assert set(jwk_dict) == {"kty", "crv", "x", "y"}
    assert jwk_dict["kty"] == "EC" and jwk_dict["crv"] == "P-256"
    assert jwk_dict == public_jwk(private_key.public_key())


def test_make_proof_claims_and_header() -> None:
    token = proof()
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "typ": PROOF_TYP}
    body = jwt.decode(token, PHONE.public_key(), algorithms=["ES256"],
                      options={"verify_iat": False})
    assert {k: body[k] for k in ("nonce", "lock", "iat", "key")} == {
        "nonce": CHALLENGE, "lock": LOCK, "iat": ts(NOW), "key": JTI,
    }
    assert body["jti"] and body["jti"] != jwt.decode(
        proof(), PHONE.public_key(), algorithms=["ES256"], options={"verify_iat": False}
    )["jti"]


def test_public_jwk_refuses_other_curves() -> None:
    with pytest.raises(ValueError):
        public_jwk(ec.generate_private_key(ec.SECP384R1()))


def test_a_naive_now_or_an_empty_challenge_is_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        verify(sign(), proof(), now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError):
        verify(sign(), proof(), challenge="")
    with pytest.raises(ValueError):
        proof(now=NOW.replace(tzinfo=None))


def test_phone_key_imports_neither_hub_nor_simulators() -> None:
    tree = ast.parse(Path(phone_key_module.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"hub", "simulators"}
