"""NTAG 424 DNA Secure Dynamic Messaging (SUN) with AES, as NXP AN12196 describes it.

A tapped tag mirrors two hex fields into its NDEF URL: the encrypted PICCData
(UID and read counter) and an 8-byte SDMMAC. :func:`verify_sun` turns them back
into a :class:`PiccData` or raises :class:`SunError`; :func:`make_sun` is the
tag's side, for simulators and tests. :func:`diversify_key` derives per-tag keys
from a master key as NXP AN10922 describes (AES-128).

Everything here is a pure function. The AES and CMAC primitives come from
``cryptography``; this module only arranges their inputs and outputs.
LRP mode (AN12304) is not supported.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

__all__ = [
    "MAX_READ_CTR",
    "PiccData",
    "SunError",
    "SunFormatError",
    "SunMacError",
    "decrypt_file_data",
    "decrypt_picc_data",
    "diversify_key",
    "make_sun",
    "sdm_mac",
    "sdm_session_keys",
    "verify_sun",
]

KEY_LEN = 16
BLOCK = 16
UID_LEN = 7
CTR_LEN = 3
MAX_READ_CTR = 0xFFFFFF  # SDMReadCtr is 3 bytes; the tag stops answering with SDM at the top.
MAC_LEN = 8
PAD_LEN = BLOCK - 1 - UID_LEN - CTR_LEN  # RandomPadding after tag, UID and counter: 5 bytes.

# PICCDataTag: bit 7 UID mirrored, bit 6 SDMReadCtr mirrored, bits 5-4 RFU, bits 3-0 UID length.
_TAG_UID = 0x80
_TAG_CTR = 0x40
_TAG_RFU = 0x30
_TAG_LEN = 0x0F
PICC_DATA_TAG = _TAG_UID | _TAG_CTR | UID_LEN  # 0xC7, the only layout accepted here

# Session vector prefixes (AN12196 section 3.3): SV1 yields the ENC key, SV2 the MAC key.
_SV1_PREFIX = bytes.fromhex("C33C00010080")
_SV2_PREFIX = bytes.fromhex("3CC300010080")

# AN10922 AES-128: diversification constant, longest input M, and the CMAC padding byte.
_DIV_CONST_AES128 = b"\x01"
_DIV_MAX_INPUT = 31
_PAD_START = b"\x80"

_PICC_HEX = re.compile(r"[0-9A-Fa-f]{32}")
_MAC_HEX = re.compile(r"[0-9A-Fa-f]{16}")


class SunError(Exception):
    """A SUN message was not accepted. Callers should answer every subclass alike."""


class SunFormatError(SunError):
    """The SUN fields are malformed, or the PICCData does not decrypt to a known layout."""


class SunMacError(SunError):
    """The SDMMAC does not match: wrong key, altered data, or a forged message."""


@dataclass(frozen=True, slots=True)
class PiccData:
    """Decrypted PICCData: which tag was read, and its read counter at that read."""

    uid: bytes
    read_ctr: int

    @property
    def uid_hex(self) -> str:
        """The UID as upper-case hex, the form the hub stores wristband identifiers in."""
        return self.uid.hex().upper()


# ---------------------------------------------------------------- primitives


def _check_key(key: bytes, name: str) -> None:
    # AES() would also take 24/32-byte keys; SDM and AN10922 AES-128 are 16-byte only.
    if len(key) != KEY_LEN:
        raise ValueError(f"{name} must be {KEY_LEN} bytes, got {len(key)}")


def _check_uid_ctr(uid: bytes, read_ctr: int) -> None:
    if len(uid) != UID_LEN:
        raise ValueError(f"uid must be {UID_LEN} bytes, got {len(uid)}")
    if not 0 <= read_ctr <= MAX_READ_CTR:
        raise ValueError(f"read_ctr must be in 0..{MAX_READ_CTR:#x}, got {read_ctr}")


def _cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def _cbc(key: bytes, iv: bytes, data: bytes, *, decrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


def _ecb(key: bytes, block: bytes, *, decrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.ECB())  # a single block, as the specs use it
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(block) + ctx.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _ctr_bytes(read_ctr: int) -> bytes:
    # SDMReadCtr travels LSB first everywhere: in PICCData, in SV1/SV2 and in the IV input.
    return read_ctr.to_bytes(CTR_LEN, "little")


# ---------------------------------------------------------------- PICCData


def decrypt_picc_data(picc_enc: bytes, meta_read_key: bytes) -> PiccData:
    """Decrypt the 16-byte PICCENCData with K_SDMMetaRead (AES-128-CBC, zero IV) and parse it.

    Only the layout with both UID and SDMReadCtr mirrored and a 7-byte UID is accepted:
    without the counter a SUN message can be replayed, so it proves nothing at a gate.
    """
    _check_key(meta_read_key, "meta_read_key")
    if len(picc_enc) != BLOCK:
        raise SunFormatError(f"PICCENCData must be {BLOCK} bytes, got {len(picc_enc)}")
    plain = _cbc(meta_read_key, bytes(BLOCK), picc_enc, decrypt=True)
    tag = plain[0]
    if not tag & _TAG_UID:
        raise SunFormatError("PICCData without UID mirroring")
    if not tag & _TAG_CTR:
        raise SunFormatError("PICCData without SDMReadCtr mirroring")
    if tag & _TAG_RFU or tag & _TAG_LEN != UID_LEN:
        # A wrong K_SDMMetaRead lands here nearly always: the plaintext is noise.
        raise SunFormatError(f"unsupported PICCDataTag {tag:#04x}")
    uid = plain[1 : 1 + UID_LEN]
    read_ctr = int.from_bytes(plain[1 + UID_LEN : 1 + UID_LEN + CTR_LEN], "little")
    return PiccData(uid=uid, read_ctr=read_ctr)


# ---------------------------------------------------------------- session keys and MAC


def sdm_session_keys(file_read_key: bytes, uid: bytes, read_ctr: int) -> tuple[bytes, bytes]:
    """Derive (KSesSDMFileReadENC, KSesSDMFileReadMAC) from K_SDMFileRead for one read.

    SVx = prefix || UID || SDMReadCtr (LSB first); with a 7-byte UID and the counter
    that is exactly one block, so the zero padding AN12196 mentions never applies.
    """
    _check_key(file_read_key, "file_read_key")
    _check_uid_ctr(uid, read_ctr)
    tail = uid + _ctr_bytes(read_ctr)
    enc_key = _cmac(file_read_key, _SV1_PREFIX + tail)
    mac_key = _cmac(file_read_key, _SV2_PREFIX + tail)
    return enc_key, mac_key


def sdm_mac(mac_session_key: bytes, mac_input: bytes) -> bytes:
    """SDMMAC: AES-CMAC over the MAC input, truncated to its odd-indexed bytes (1, 3, ..., 15).

    ``mac_input`` is the NDEF file slice from SDMMACInputOffset up to the MAC itself,
    as ASCII bytes; empty when SDMMACInputOffset equals SDMMACOffset.
    """
    _check_key(mac_session_key, "mac_session_key")
    return _cmac(mac_session_key, mac_input)[1::2]


def decrypt_file_data(
    file_read_key: bytes, uid: bytes, read_ctr: int, enc_file_data: bytes
) -> bytes:
    """Decrypt SDMENCFileData: AES-128-CBC with KSesSDMFileReadENC.

    The IV is E(KSesSDMFileReadENC, SDMReadCtr || 13 zero bytes), so it changes per read.
    ``enc_file_data`` is the raw ciphertext (the URL carries it hex-encoded). This does
    not authenticate it: check the SDMMAC first, with the hex field in ``mac_input``.
    """
    if not enc_file_data or len(enc_file_data) % BLOCK:
        raise SunFormatError(
            f"SDMENCFileData must be whole {BLOCK}-byte blocks, got {len(enc_file_data)} bytes"
        )
    enc_key, _ = sdm_session_keys(file_read_key, uid, read_ctr)
    iv = _ecb(enc_key, _ctr_bytes(read_ctr) + bytes(BLOCK - CTR_LEN), decrypt=False)
    return _cbc(enc_key, iv, enc_file_data, decrypt=True)


# ---------------------------------------------------------------- the SUN message


def verify_sun(
    picc_enc_hex: str,
    cmac_hex: str,
    *,
    meta_read_key: bytes,
    file_read_key: bytes,
    mac_input: bytes = b"",
) -> PiccData:
    """Check a SUN message and return its PiccData, or raise SunFormatError / SunMacError.

    Authenticity only: the caller must still reject a read_ctr that does not exceed
    the last one seen for this UID, or a copied URL replays forever.
    """
    if not _PICC_HEX.fullmatch(picc_enc_hex):
        raise SunFormatError("PICCENCData must be 32 hex digits")
    if not _MAC_HEX.fullmatch(cmac_hex):
        raise SunFormatError("SDMMAC must be 16 hex digits")
    picc = decrypt_picc_data(bytes.fromhex(picc_enc_hex), meta_read_key)
    _, mac_key = sdm_session_keys(file_read_key, picc.uid, picc.read_ctr)
    expected = sdm_mac(mac_key, mac_input)
    # Constant time, so response timing does not tell a forger how many MAC bytes were right.
    if not hmac.compare_digest(expected, bytes.fromhex(cmac_hex)):
        raise SunMacError("SDMMAC mismatch")
    return picc


def make_sun(
    uid: bytes,
    read_ctr: int,
    *,
    meta_read_key: bytes,
    file_read_key: bytes,
    mac_input: bytes = b"",
    random_pad: bytes | None = None,
) -> tuple[str, str]:
    """Produce (PICCENCData hex, SDMMAC hex) as a tag would mirror them, upper case.

    The tag fills PICCData's last 5 bytes with fresh random data so equal UID and counter
    never encrypt alike; pass ``random_pad`` only to reproduce a known message.
    """
    _check_key(meta_read_key, "meta_read_key")
    _check_uid_ctr(uid, read_ctr)
    if random_pad is None:
        random_pad = secrets.token_bytes(PAD_LEN)
    elif len(random_pad) != PAD_LEN:
        raise ValueError(f"random_pad must be {PAD_LEN} bytes, got {len(random_pad)}")
    plain = bytes([PICC_DATA_TAG]) + uid + _ctr_bytes(read_ctr) + random_pad
    picc_enc = _cbc(meta_read_key, bytes(BLOCK), plain, decrypt=False)
    _, mac_key = sdm_session_keys(file_read_key, uid, read_ctr)
    return picc_enc.hex().upper(), sdm_mac(mac_key, mac_input).hex().upper()


# ---------------------------------------------------------------- AN10922 key diversification


def _cmac_k2(key: bytes) -> bytes:
    # CMAC of the empty message is E(K, 0x80 00..00 XOR K2). Undoing that one block reads
    # the subkey K2 off the library's CMAC, rather than redoing its GF(2^128) arithmetic here.
    tag = _ecb(key, _cmac(key, b""), decrypt=True)
    return _xor(tag, _PAD_START + bytes(BLOCK - 1))


def diversify_key(
    master_key: bytes,
    uid: bytes,
    application_info: bytes = b"",
    system_identifier: bytes = b"",
) -> bytes:
    """Derive a tag's AES-128 key from a master key, NXP AN10922 section 2.2 style.

    M = UID || application info (e.g. a 3-byte AID) || system identifier, 1..31 bytes.
    The key is CMAC(master, 0x01 || M) except that AN10922 always pads to two blocks:
    for short M that differs from RFC 4493 CMAC, which would pad to one block only.
    The defaults diversify on the UID alone; a deployment should fix its own
    application info and system identifier, since changing them changes every key.
    """
    _check_key(master_key, "master_key")
    m = uid + application_info + system_identifier
    if not 1 <= len(m) <= _DIV_MAX_INPUT:
        raise ValueError(f"diversification input must be 1..{_DIV_MAX_INPUT} bytes, got {len(m)}")
    d = _DIV_CONST_AES128 + m
    if len(d) == 2 * BLOCK:
        # No padding needed: AN10922 then is plain CMAC, last block XORed with K1.
        return _cmac(master_key, d)
    padded = (d + _PAD_START).ljust(2 * BLOCK, b"\x00")
    last = _xor(padded[BLOCK:], _cmac_k2(master_key))
    # CBC-MAC over the two prepared blocks: the last ciphertext block is the key.
    return _cbc(master_key, bytes(BLOCK), padded[:BLOCK] + last, decrypt=False)[BLOCK:]
