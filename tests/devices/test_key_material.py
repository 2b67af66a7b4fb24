"""Signed key material (devices.key_material), as an offline lock verifies it.

Documents are signed here with :func:`devices.key_material.sign` and test keys, or bent
by hand (another key, another alg, other claims), so every refusal is reached; the clock
is fixed. Each test names the reason it expects, so a check that stops refusing fails.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from devices.key_material import (
    TYP,
    KeyMaterialError,
    KeyState,
    Kind,
    Reason,
    document,
    sign,
    verify,
)
from devices.phone_key import public_jwk

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
VENUE = "demo-resort"
OLD = ec.generate_private_key(ec.SECP256R1())
NEW = ec.generate_private_key(ec.SECP256R1())
ATTACKER = ec.generate_private_key(ec.SECP256R1())


def entry(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, str]:
    return {**public_jwk(key), "kid": kid, "alg": "ES256", "use": "sig"}


ANCHOR: dict[str, Any] = {"keys": [entry(OLD, "old")]}
ROTATED: dict[str, Any] = {"keys": [entry(OLD, "old"), entry(NEW, "new")]}


def signed(kind: Kind, content: Mapping[str, Any] | list[str], *, seq: int = 1,
           key: ec.EllipticCurvePrivateKey = OLD, kid: str = "old",
           venue: str = VENUE) -> bytes:
    jws = sign(kind, content, venue=venue, seq=seq, now=NOW, private_key=key, kid=kid)
    return json.dumps(document(jws, {})).encode()


def hand_made(claims: dict[str, Any], *, key: ec.EllipticCurvePrivateKey = OLD,
              headers: dict[str, Any] | None = None) -> bytes:
    jws = jwt.encode(claims, key, algorithm="ES256",
                     headers=headers if headers is not None else {"kid": "old", "typ": TYP})
    return json.dumps({"jws": jws}).encode()


def claims(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"v": 1, "kind": "revocations", "venue": VENUE,
                            "iat": int(NOW.timestamp()), "seq": 1, "revoked": ["j1"]}
    return {**base, **over}


def refused(payload: bytes, reason: Reason, *, kind: Kind = "revocations",
            trusted: Mapping[str, Any] = ANCHOR) -> None:
    with pytest.raises(KeyMaterialError) as caught:
        verify(payload, kind=kind, venue=VENUE, trusted=trusted)
    assert caught.value.reason is reason, caught.value


def test_a_document_signed_by_the_anchor_verifies() -> None:
    material = verify(signed("revocations", ["j2", "j1"], seq=7), kind="revocations",
                      venue=VENUE, trusted=ANCHOR)
    assert (material.kind, material.venue, material.seq, material.kid) == (
        "revocations", VENUE, 7, "old")
    assert material.revoked == {"j1", "j2"} and material.iat == NOW
    jwks = verify(signed("jwks", ROTATED), kind="jwks", venue=VENUE, trusted=ANCHOR)
    assert jwks.jwks == ROTATED


def test_the_unsigned_members_beside_the_jws_are_never_read() -> None:
    payload = json.loads(signed("revocations", ["j1"]))
    payload["revoked"] = []  # what a reader from before signing would see
    material = verify(payload, kind="revocations", venue=VENUE, trusted=ANCHOR)
    assert material.revoked == {"j1"}


def test_unsigned_key_material_is_refused() -> None:
    refused(json.dumps({"revoked": [], "issued_at": NOW.isoformat()}).encode(),
            Reason.MALFORMED)
    refused(json.dumps({"keys": ANCHOR["keys"]}).encode(), Reason.MALFORMED, kind="jwks")
    refused(b"not json", Reason.MALFORMED)
    refused(b"x" * 70_000, Reason.MALFORMED)


def test_a_forged_signature_is_refused() -> None:
    # The attacker's key under the anchor's kid: the signature does not verify.
    refused(signed("revocations", [], key=ATTACKER, kid="old"), Reason.BAD_SIGNATURE)
    # A signature cut from another document onto this payload.
    good = json.loads(signed("revocations", ["j1"]))["jws"]
    other = json.loads(signed("revocations", [], seq=9))["jws"]
    spliced = ".".join([*other.split(".")[:2], good.split(".")[2]])
    refused(json.dumps({"jws": spliced}).encode(), Reason.BAD_SIGNATURE)


def test_an_unknown_kid_is_refused() -> None:
    # The attacker's own key, named by its own kid: not one the lock trusts.
    refused(signed("revocations", [], key=ATTACKER, kid="attacker"), Reason.UNKNOWN_KID)
    # ... even when the attacker ships it in the document itself (jwk header).
    refused(hand_made(claims(), key=ATTACKER,
                      headers={"kid": "attacker", "typ": TYP,
                               "jwk": entry(ATTACKER, "attacker")}), Reason.UNKNOWN_KID)


def test_another_alg_is_refused() -> None:
    header = base64.urlsafe_b64encode(json.dumps(
        {"alg": "none", "kid": "old", "typ": TYP}).encode()).rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=").decode()
    refused(json.dumps({"jws": f"{header}.{body}."}).encode(), Reason.BAD_ALG)
    hs = jwt.encode(claims(), "s" * 32, algorithm="HS256", headers={"kid": "old", "typ": TYP})
    refused(json.dumps({"jws": hs}).encode(), Reason.BAD_ALG)


def test_the_wrong_venue_or_kind_is_refused() -> None:
    refused(signed("revocations", [], venue="other-venue"), Reason.WRONG_VENUE)
    # A revocation list offered as the JWKS (both signed by the hub).
    refused(signed("revocations", []), Reason.WRONG_KIND, kind="jwks")


@pytest.mark.parametrize("bent", [
    {"v": 2}, {"seq": "7"}, {"seq": True}, {"seq": -1}, {"iat": "now"},
    {"revoked": "j1"}, {"revoked": [1]}, {"extra": 1}, {"kind": "keys"},
])
def test_ill_formed_payloads_are_refused(bent: dict[str, Any]) -> None:
    refused(hand_made(claims(**bent)), Reason.MALFORMED)


def test_a_jwks_with_a_private_or_foreign_key_is_refused() -> None:
    with_private = {"keys": [{**entry(NEW, "new"), "d": "AAAA"}]}
    refused(signed("jwks", with_private), Reason.MALFORMED, kind="jwks")
    rsa_like = {"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"}]}
    refused(signed("jwks", rsa_like), Reason.MALFORMED, kind="jwks")


def test_rollback_to_an_older_list_is_refused_and_the_state_kept() -> None:
    state = KeyState.from_anchor(VENUE, ANCHOR)
    state = state.accept("revocations", signed("revocations", ["j1", "j2"], seq=5))
    with pytest.raises(KeyMaterialError) as caught:
        state.accept("revocations", signed("revocations", ["j1"], seq=4))
    assert caught.value.reason is Reason.ROLLBACK
    assert state.revoked == {"j1", "j2"}
    # The same document handed over again (a reconnection) changes nothing.
    assert state.accept("revocations", signed("revocations", ["j1"], seq=5)) is state
    newer = state.accept("revocations", signed("revocations", ["j3"], seq=6))
    assert newer.revoked == {"j3"} and newer.seqs["revocations"] == 6


def test_a_seq_is_held_per_kind() -> None:
    state = KeyState.from_anchor(VENUE, ANCHOR)
    state = state.accept("jwks", signed("jwks", ANCHOR, seq=8))
    state = state.accept("revocations", signed("revocations", ["j1"], seq=3))
    assert state.seqs == {"jwks": 8, "revocations": 3}


def test_rotation_follows_a_jwks_signed_by_a_trusted_key() -> None:
    state = KeyState.from_anchor(VENUE, ANCHOR)
    # Before the rotation reaches the lock, the new key signs nothing it believes.
    with pytest.raises(KeyMaterialError) as caught:
        state.accept("revocations", signed("revocations", [], seq=2, key=NEW, kid="new"))
    assert caught.value.reason is Reason.UNKNOWN_KID
    # The hub announces the new key under the old one (its oldest valid key signs).
    state = state.accept("jwks", signed("jwks", ROTATED, seq=2))
    state = state.accept("revocations", signed("revocations", ["j9"], seq=3, key=NEW,
                                               kid="new"))
    assert state.revoked == {"j9"}
    # The old key leaves the JWKS: what it signs is no longer believed.
    state = state.accept("jwks", signed("jwks", {"keys": [entry(NEW, "new")]}, seq=4,
                                        key=NEW, kid="new"))
    with pytest.raises(KeyMaterialError) as caught:
        state.accept("revocations", signed("revocations", [], seq=5))
    assert caught.value.reason is Reason.UNKNOWN_KID


def test_a_jwks_signed_by_an_untrusted_key_changes_nothing() -> None:
    state = KeyState.from_anchor(VENUE, ANCHOR)
    planted = {"keys": [entry(ATTACKER, "attacker")]}
    with pytest.raises(KeyMaterialError):
        state.accept("jwks", signed("jwks", planted, seq=99, key=ATTACKER, kid="attacker"))
    assert state.jwks == ANCHOR and state.seqs == {}


def test_an_anchor_must_hold_public_keys() -> None:
    bads: list[dict[str, Any]] = [{"keys": []}, {"keys": [{**entry(OLD, "old"), "d": "AAAA"}]}, {}]
    for bad in bads:
        with pytest.raises(ValueError):
            KeyState.from_anchor(VENUE, bad)


def test_signing_refuses_a_naive_clock_and_an_unknown_kind() -> None:
    with pytest.raises(ValueError):
        sign("revocations", [], venue=VENUE, seq=1, now=NOW.replace(tzinfo=None),
             private_key=OLD, kid="old")
    with pytest.raises(ValueError):
        sign("keys", [], venue=VENUE, seq=1, now=NOW, private_key=OLD,  # type: ignore[arg-type]
             kid="old")
