"""devices.phone.Phone: the key side of a phone tap, as the README's walk-through uses it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from devices.phone import Phone
from devices.phone_key import (
    PROOF_TYP,
    PhoneKeyError,
    Reason,
    new_challenge,
    public_jwk,
    verify_phone_key,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
VENUE, LOCK = "demo-resort", "lock-101"


def _hub_key(phone: Phone) -> tuple[dict[str, Any], str, str]:
    """A JWKS and a phone key signed for ``phone`` as the hub signs one (ES256, kid, typ)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    signer = ec.generate_private_key(ec.SECP256R1())
    jwks = {"keys": [{**public_jwk(signer), "kid": "k1", "alg": "ES256", "use": "sig"}]}
    claims = {"iss": f"venuehub:{VENUE}", "aud": VENUE, "sub": "guest-01",
              "cid": "phone-guest-01", "scope": {"zones": ["room-101"]},
              "nbf": int((NOW - timedelta(hours=1)).timestamp()),
              "exp": int((NOW + timedelta(days=1)).timestamp()),
              "iat": int((NOW - timedelta(hours=1)).timestamp()), "jti": "jti-1",
              "cnf": {"jwk": phone.public_jwk}}
    token = jwt.encode(claims, signer, algorithm="ES256",
                       headers={"kid": "k1", "typ": "vh-phone-key+jwt"})
    return jwks, token, "jti-1"


def test_the_answer_opens_at_the_lock_it_was_made_for() -> None:
    phone = Phone.new()
    jwks, token, jti = _hub_key(phone)
    phone.hold({"token": token, "jti": jti, "kid": "k1", "zones": ["room-101"]})
    challenge = new_challenge()
    credential = phone.answer(challenge, LOCK, NOW)
    assert (credential.token, credential.challenge) == (token, challenge)
    assert credential.proof is not None
    assert jwt.get_unverified_header(credential.proof) == {"alg": "ES256", "typ": PROOF_TYP}
    claims = jwt.decode(credential.proof, options={"verify_signature": False})
    assert set(claims) == {"nonce", "lock", "iat", "jti", "key"}
    assert (claims["nonce"], claims["lock"], claims["key"]) == (challenge, LOCK, jti)
    key = verify_phone_key(token, credential.proof, jwks=jwks, issuer=f"venuehub:{VENUE}",
                           audience=VENUE, challenge=challenge, lock_id=LOCK, revoked=(),
                           now=NOW)
    assert key.credential_id == "phone-guest-01"
    with pytest.raises(PhoneKeyError) as refused:  # another phone's key pair
        verify_phone_key(token, Phone.new().hold({"token": token, "jti": jti}).answer(
            challenge, LOCK, NOW).proof, jwks=jwks, issuer=f"venuehub:{VENUE}",
            audience=VENUE, challenge=challenge, lock_id=LOCK, revoked=(), now=NOW)
    assert refused.value.reason is Reason.PROOF_BAD_SIGNATURE


def test_the_public_jwk_is_public_and_the_key_survives_pem() -> None:
    phone = Phone.new()
    assert set(phone.public_jwk) == {"kty", "crv", "x", "y"}
    again = Phone.from_pem(phone.pem(), token="the-signed-key", jti="j")
    assert again.public_jwk == phone.public_jwk
    assert (again.token, again.jti) == ("the-signed-key", "j")
    assert "the-signed-key" not in repr(again) and "PRIVATE" not in repr(again)


@pytest.mark.parametrize("answer", [{}, {"token": "t"}, {"jti": "j"}, {"token": "", "jti": "j"},
                                    {"token": 1, "jti": "j"}])
def test_holding_what_is_not_a_key_is_refused(answer: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="token and jti"):
        Phone.new().hold(answer)


def test_a_phone_without_a_key_cannot_answer() -> None:
    with pytest.raises(ValueError, match="holds no key"):
        Phone.new().answer(new_challenge(), LOCK, NOW)


def test_a_pem_that_is_not_an_ec_key_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(TypeError):
        Phone.from_pem(pem)
