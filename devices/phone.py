"""A guest's phone and its signed phone key: the key side of a tap, ready to use.

The phone makes its own P-256 key pair; the private half never leaves it. Its app sends
the public half (:attr:`Phone.public_jwk`) to the hub, ``POST
/api/v1/credentials/{id}/phone-key`` ``{"phone_jwk": ...}``, and keeps the key the hub
signs (:meth:`Phone.hold`). At a door the lock hands the phone a fresh challenge (over
NFC or BLE; :func:`devices.phone_key.new_challenge` makes one), and :meth:`Phone.answer`
returns what the lock sends the hub: the key, the challenge and the proof, a JWS by the
phone's key (header ``{"alg": "ES256", "typ": "vh-key-proof+jwt"}``, claims ``nonce``,
``lock``, ``iat``, ``jti``, ``key``; :func:`devices.phone_key.make_proof`)::

    phone = Phone.new()
    issued = ...  # the hub's answer to POST /credentials/phone-guest-01/phone-key
    phone.hold(issued)
    credential = phone.answer(challenge, "lock-101")
    decision = lock.tap(credential)  # a DeviceClient logged in as the lock
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devices.contract import PhoneKeyCredential
from devices.phone_key import make_proof, public_jwk

__all__ = ["Phone"]


@dataclass
class Phone:
    """A phone: its own key pair and the signed key the hub issued for it (once held)."""

    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    token: str = field(default="", repr=False)  # the hub-signed phone key (a JWT)
    jti: str = ""  # that key's id, which every proof names

    @classmethod
    def new(cls) -> Phone:
        """A phone with a fresh P-256 key pair and no key yet."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes, *, token: str = "", jti: str = "") -> Phone:
        """A phone whose private key was kept as PEM (PKCS#8, unencrypted) by :meth:`pem`."""
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("a phone's key is an EC P-256 private key")
        return cls(key, token=token, jti=jti)

    def pem(self) -> bytes:
        """The private key as PEM, to keep on the phone (its secure storage) between runs."""
        return self.private_key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())

    @property
    def public_jwk(self) -> dict[str, str]:
        """What the hub binds the key to: ``{"kty": "EC", "crv": "P-256", "x", "y"}``."""
        return public_jwk(self.private_key)

    def hold(self, issued: Mapping[str, Any]) -> Phone:
        """Keep the key the hub issued: its answer's ``token`` and ``jti``."""
        token, jti = issued.get("token"), issued.get("jti")
        if not (isinstance(token, str) and token and isinstance(jti, str) and jti):
            raise ValueError("the hub's answer has no token and jti")
        self.token, self.jti = token, jti
        return self

    def answer(self, challenge: str, lock_id: str, now: datetime | None = None
               ) -> PhoneKeyCredential:
        """The credential for this tap: the key, the lock's challenge and the proof."""
        if not self.token:
            raise ValueError("the phone holds no key yet: hold() the hub's answer first")
        proof = make_proof(self.private_key, challenge=challenge, lock_id=lock_id,
                           key_jti=self.jti, now=now or datetime.now(UTC))
        return PhoneKeyCredential(token=self.token, challenge=challenge, proof=proof)
