"""The embedded broker against clients that never log in, and against floods of refused
CONNECTs: file descriptors, the log and the audit log stay bounded."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from hub import broker as broker_module
from hub.broker import EmbeddedBroker
from hub.broker_audit import record_refusals
from hub.broker_auth import BrokerAuth, Refusal
from hub.db import create_db_engine, init_db
from hub.models import AuditEntry, utcnow
from tests.conftest import free_port
from tests.e2e.test_broker_acl import NOT_AUTHORIZED, Probe

SECRET = b"flood-test-secret-0123456789abcd"


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedBroker]:
    monkeypatch.setattr(broker_module, "_CONNECT_WITHIN", 1.0)
    monkeypatch.setattr(broker_module, "_WAITING_PER_ADDRESS", 8)
    embedded = EmbeddedBroker("127.0.0.1", free_port(),
                              auth=BrokerAuth(SECRET, "hub-bridge", "bridge-password"))
    embedded.start()
    yield embedded
    embedded.stop()


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True  # reset


def test_a_socket_that_never_sends_connect_is_dropped(broker: EmbeddedBroker) -> None:
    idle = socket.create_connection(("127.0.0.1", broker.port))
    try:
        assert closed_by_peer(idle, within=10)
    finally:
        idle.close()


def test_one_address_cannot_hold_every_socket(broker: EmbeddedBroker) -> None:
    held = [socket.create_connection(("127.0.0.1", broker.port)) for _ in range(8)]
    try:
        time.sleep(0.3)  # the broker has taken them all in
        extra = socket.create_connection(("127.0.0.1", broker.port))
        assert closed_by_peer(extra, within=0.5)  # turned away at once, not after the timeout
        extra.close()
        assert broker.refusals["crowd"] >= 1
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    probe = Probe(broker.port, ("nobody.here", "wrong"))
    try:
        assert probe.connect().value == NOT_AUTHORIZED  # heard again once they are gone
    finally:
        probe.close()


def test_refusals_keep_only_a_bounded_printable_name(broker: EmbeddedBroker) -> None:
    probe = Probe(broker.port, ("x" * 5000 + "\n\x1b[31m", "wrong"))
    try:
        assert probe.connect().value == NOT_AUTHORIZED
    finally:
        probe.close()
    [refusal] = broker.take_refusals()
    assert refusal.username == "x" * 64 and refusal.reason == "login"


def test_a_flood_of_names_costs_a_bounded_number_of_audit_rows(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    init_db(engine)
    flood = [Refusal("login", f"user-{n}", f"c-{n}", "10.0.0.9") for n in range(3000)]
    steady = [Refusal("login", "demo.lock-101", "lock", "10.0.0.7")] * 3
    assert record_refusals(engine, flood + steady, utcnow()) == 7  # 5 + (many) + the lock
    with Session(engine) as session:
        rows = session.exec(select(AuditEntry)).all()
    many = [r for r in rows if r.target == "mqtt-user:(many)"]
    assert [(r.detail["count"], r.detail["users"]) for r in many] == [(2995, 2995)]
    lock = [r for r in rows if r.target == "mqtt-user:demo.lock-101"]
    assert [(r.detail["count"], r.detail["address"]) for r in lock] == [(3, "10.0.0.7")]
    spread = [Refusal("login", "u", "c", f"10.1.{n // 250}.{n % 250}") for n in range(500)]
    assert record_refusals(engine, spread, utcnow()) == 50
