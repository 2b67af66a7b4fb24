"""The venue's TLS: a private CA of its own, and the broker's server certificate it signs.

PINs and phone keys travel in MQTT payloads, so the broker also listens with TLS. The
venue has no public name to get a certificate for, so ``hub init`` (and the first
``hub up``) makes a CA under ``<data dir>/tls``; devices are given ``ca.crt`` to trust.

- ``ca.key`` / ``ca.crt``          the venue CA (ECDSA P-256, ten years); kept once made
- ``server.key`` / ``server.crt``  the broker's certificate: localhost, 127.0.0.1, ::1, this
  host's name and any ``--tls-name``; made again when a name is added, when it nears its
  end, or when the CA changed

Keys are written 0600 from the first byte; the folder is 0700. The certificates are
public. Only this module touches ``cryptography``'s X.509 API.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = timedelta(days=3650)
# Apple's clients refuse server certificates valid longer than 825 days, private CA or not.
SERVER_LIFETIME = timedelta(days=825)
RENEW_BEFORE = timedelta(days=30)  # a server certificate this close to its end is made again
_BACKDATE = timedelta(minutes=5)  # devices whose clocks run a little behind still accept it
_DNS_NAME = re.compile(r"(?=.{1,253}$)(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")

Name = x509.DNSName | x509.IPAddress


class TlsError(ValueError):
    """A TLS file or name the hub cannot use."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where the venue CA and the broker's certificate and key are."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def under(cls, data_dir: Path) -> TlsFiles:
        """The files' places in a data directory (whether they exist or not)."""
        folder = data_dir / "tls"
        return cls(ca_cert=folder / "ca.crt", ca_key=folder / "ca.key",
                   server_cert=folder / "server.crt", server_key=folder / "server.key")


@dataclass(frozen=True, slots=True)
class TlsListener:
    """The embedded broker's TLS listener: plain values, so it crosses to the broker's process."""

    port: int
    certfile: Path
    keyfile: Path


# ------------------------------------------------------------------ pure: names and certificates


def parse_name(text: str) -> Name:
    """A subject alternative name: an IP address, else a DNS name; TlsError if neither."""
    value = text.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        pass
    if not _DNS_NAME.fullmatch(value):
        raise TlsError(f"{text!r} is neither an IP address nor a DNS name")
    return x509.DNSName(value.rstrip(".").lower())


def server_names(extra: Iterable[str] = (), hostname: str | None = None) -> list[Name]:
    """The names the broker is reached by: loopback, this host's name, and ``extra``."""
    host = socket.gethostname() if hostname is None else hostname
    names = [parse_name(text) for text in DEFAULT_NAMES]
    # A host name no certificate can carry (say, with "_") is not one to dial anyway.
    with contextlib.suppress(TlsError):
        names.append(parse_name(host))
    names += [parse_name(text) for text in extra]  # a bad name asked for is an error
    return list(dict.fromkeys(names))  # in order, once each


def make_ca(now: datetime, common_name: str = "venue-hub CA") -> tuple[ec.EllipticCurvePrivateKey,
                                                                         x509.Certificate]:
    """A new self-signed CA that may sign server certificates and nothing below them."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "venue-hub"),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                     names: list[Name], now: datetime) -> tuple[ec.EllipticCurvePrivateKey,
                                                                x509.Certificate]:
    """A new key and a server certificate for ``names``, signed by the CA."""
    if not names:
        raise TlsError("a server certificate needs at least one name")
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    first = names[0].value
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "venue-hub"),
                         x509.NameAttribute(NameOID.COMMON_NAME, str(first))])
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(min(now + SERVER_LIFETIME, ca_cert.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False,
                                         crl_sign=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def names_of(cert: x509.Certificate) -> list[Name]:
    """The subject alternative names a certificate carries."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [n for n in san if isinstance(n, x509.DNSName | x509.IPAddress)]


def certificate_names(path: Path) -> list[str]:
    """The names the certificate in a PEM file is good for, as text."""
    return [str(name.value) for name in names_of(_read_cert(path))]


def signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Did this CA issue and sign ``cert``?"""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _server_cert_ok(cert: x509.Certificate, ca_cert: x509.Certificate, names: list[Name],
                    now: datetime) -> bool:
    return (signed_by(cert, ca_cert) and all(n in names_of(cert) for n in names)
            and cert.not_valid_after_utc - now > RENEW_BEFORE
            and cert.not_valid_before_utc <= now)


# ------------------------------------------------------------------ the edge: files


def _write_private(path: Path, data: bytes, mode: int) -> None:
    # Atomically, and with its mode from the first byte: no moment where a key is readable.
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} is readable by others: chmod 600 it")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise TlsError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{path} is not an EC private key")
    return key


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise TlsError(f"{path} is not a PEM certificate") from exc


def ensure_tls(data_dir: Path, extra_names: Iterable[str] = (), *,
               now: datetime | None = None, hostname: str | None = None) -> TlsFiles:
    """Make the venue CA and the broker's certificate under ``data_dir/tls`` when missing.

    An existing CA is kept. The server certificate is kept while it is the CA's, covers
    every name asked for and has more than 30 days left; otherwise it is made again,
    keeping the names it had (a later ``hub up`` without ``--tls-name`` drops none).
    """
    now = now or datetime.now(UTC)
    files = TlsFiles.under(data_dir)
    folder = files.ca_cert.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if files.ca_key.exists() and files.ca_cert.exists():
        ca_key, ca_cert = _read_key(files.ca_key), _read_cert(files.ca_cert)
    elif files.ca_key.exists() or files.ca_cert.exists():
        # Half a CA: making a new one would strand the devices that trust the old one.
        raise TlsError(f"{folder} holds only one of ca.key and ca.crt: restore the other, or "
                       "remove both to make a new venue CA (devices must then get the new one)")
    else:
        ca_key, ca_cert = make_ca(now)
        _write_private(files.ca_key, _pem_key(ca_key), 0o600)
        _write_private(files.ca_cert, _pem_cert(ca_cert), 0o644)
    wanted = server_names(extra_names, hostname)
    current = _read_cert(files.server_cert) if files.server_cert.exists() else None
    if current is not None and files.server_key.exists():
        _read_key(files.server_key)  # refuses a key others can read, as the CA's
        if _server_cert_ok(current, ca_cert, wanted, now):
            return files
    if current is not None and signed_by(current, ca_cert):
        wanted += [n for n in names_of(current) if n not in wanted]
    key, cert = make_server_cert(ca_key, ca_cert, wanted, now)
    # The key first: a certificate beside a key that is not its own would not load.
    _write_private(files.server_key, _pem_key(key), 0o600)
    _write_private(files.server_cert, _pem_cert(cert), 0o644)
    return files
