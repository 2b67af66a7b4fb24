"""The venue CA and the broker's certificate: right names, signed by the CA, keys 0600,
made once and kept."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from hub.tls import (
    SERVER_LIFETIME,
    TlsError,
    TlsFiles,
    certificate_names,
    ensure_tls,
    names_of,
    parse_name,
    server_names,
    signed_by,
)

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_server_certificate_names_loopback_the_host_and_extra_names(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, ["hub.venue.example", "10.0.0.5"], now=NOW,
                       hostname="gatehouse")
    names = names_of(cert(files.server_cert))
    assert x509.DNSName("localhost") in names
    assert x509.IPAddress(ipaddress.ip_address("127.0.0.1")) in names
    assert x509.IPAddress(ipaddress.ip_address("::1")) in names
    assert x509.DNSName("gatehouse") in names
    assert x509.DNSName("hub.venue.example") in names
    # An IP address as an IP SAN: a client dialling 10.0.0.5 checks it there, not as DNS.
    assert x509.IPAddress(ipaddress.ip_address("10.0.0.5")) in names
    assert x509.DNSName("10.0.0.5") not in names
    assert certificate_names(files.server_cert)[:3] == ["localhost", "127.0.0.1", "::1"]


def test_the_ca_signs_the_server_certificate_and_is_a_ca(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, now=NOW, hostname="gatehouse")
    ca, server = cert(files.ca_cert), cert(files.server_cert)
    assert signed_by(server, ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    other = ensure_tls(tmp_path / "other-venue", now=NOW, hostname="gatehouse")
    assert not signed_by(server, cert(other.ca_cert))
    assert server.not_valid_after_utc - server.not_valid_before_utc <= SERVER_LIFETIME + \
        timedelta(minutes=10)
    # What a TLS server and client load: the key matches the certificate, the CA verifies.
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
        files.server_cert, files.server_key)
    ssl.create_default_context(cafile=str(files.ca_cert))


def test_keys_are_0600_in_a_0700_folder(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, now=NOW)
    assert mode(files.ca_key) == 0o600 and mode(files.server_key) == 0o600
    assert mode(files.ca_cert.parent) == 0o700
    assert b"PRIVATE KEY" in files.ca_key.read_bytes()
    assert b"PRIVATE KEY" not in files.ca_cert.read_bytes()


def test_made_once_then_kept(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, now=NOW, hostname="gatehouse")
    before = {p: p.read_bytes() for p in (files.ca_cert, files.ca_key, files.server_cert,
                                          files.server_key)}
    assert ensure_tls(tmp_path, now=NOW + timedelta(days=1), hostname="gatehouse") == files
    assert {p: p.read_bytes() for p in before} == before


def test_a_new_name_makes_a_new_server_certificate_under_the_same_ca(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, ["first.example"], now=NOW, hostname="gatehouse")
    ca_key, ca_cert, old = (files.ca_key.read_bytes(), files.ca_cert.read_bytes(),
                            files.server_cert.read_bytes())
    ensure_tls(tmp_path, ["second.example"], now=NOW, hostname="gatehouse")
    assert files.ca_key.read_bytes() == ca_key and files.ca_cert.read_bytes() == ca_cert
    assert files.server_cert.read_bytes() != old
    names = names_of(cert(files.server_cert))
    # The name asked for earlier stays: a later start without it must not drop it.
    assert x509.DNSName("first.example") in names and x509.DNSName("second.example") in names
    assert signed_by(cert(files.server_cert), cert(files.ca_cert))


def test_a_server_certificate_near_its_end_is_renewed(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, now=NOW, hostname="gatehouse")
    old, ca = files.server_cert.read_bytes(), files.ca_cert.read_bytes()
    ensure_tls(tmp_path, now=NOW + SERVER_LIFETIME - timedelta(days=10), hostname="gatehouse")
    assert files.server_cert.read_bytes() != old and files.ca_cert.read_bytes() == ca


def test_half_a_ca_or_a_readable_key_is_refused(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, now=NOW)
    files.ca_key.chmod(0o644)
    with pytest.raises(PermissionError):
        ensure_tls(tmp_path, now=NOW)
    files.ca_key.unlink()
    with pytest.raises(TlsError, match="only one"):
        ensure_tls(tmp_path, now=NOW)


def test_names_that_no_certificate_carries_are_refused() -> None:
    for bad in ("bad_name", "", "a..b", "-lead.example", "x" * 300):
        with pytest.raises(TlsError):
            parse_name(bad)
    assert parse_name("[::1]") == x509.IPAddress(ipaddress.ip_address("::1"))
    assert parse_name("Hub.Example.") == x509.DNSName("hub.example")
    # A host name with "_" is left out rather than stopping the hub.
    assert x509.DNSName("my_host") not in server_names(hostname="my_host")


def test_files_live_under_the_data_dir(tmp_path: Path) -> None:
    assert TlsFiles.under(tmp_path).ca_cert == tmp_path / "tls" / "ca.crt"
