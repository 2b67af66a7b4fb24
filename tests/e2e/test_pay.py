"""Tap to pay end to end: a terminal over a real broker, the receipt on the guest's topic,
and `hub ledger verify` on the database that results (and on a corrupted one)."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.client import DeviceClient
from devices.contract import (
    LineItem,
    PaymentDecision,
    PaymentRequest,
    WristbandCredential,
    parse_receipt,
    utcnow,
)
from devices.topics import guest_topic
from hub.demo import VENUE_ID, wristband_uid
from hub.server import Hub

BIN = Path(sys.executable).parent


def test_pos_tap_to_receipt_then_ledger_verifies(running_hub: Hub) -> None:
    host, port = running_hub.settings.mqtt_address
    receipts: queue.Queue[bytes] = queue.Queue()
    subscribed = threading.Event()
    phone = mqtt.Client(CallbackAPIVersion.VERSION2)
    phone.on_message = lambda _c, _u, m: receipts.put(bytes(m.payload))
    phone.on_subscribe = lambda *_a: subscribed.set()
    phone.connect(host, port)
    phone.subscribe(guest_topic(VENUE_ID, "guest-02"), 1)
    phone.loop_start()
    assert subscribed.wait(5)
    try:
        with DeviceClient(VENUE_ID, "pos-cafe-1", host=host, port=port) as till:
            request = PaymentRequest(
                event_id="pay-e2e-1", ts=utcnow(), credential=WristbandCredential(
                    uid=wristband_uid(2)), amount=1_150, currency="USD", merchant_id="cafe",
                idempotency_key="till-1-0001", account="wallet",
                items=[LineItem(name="Flat white", unit_amount=450),
                       LineItem(name="Croissant", quantity=2, unit_amount=350)])
            decision = till.pay(request)
        assert isinstance(decision, PaymentDecision)
        assert (decision.outcome, decision.balance_after) == ("approve", 8_850)
        receipt = parse_receipt(receipts.get(timeout=5))
        assert receipt.transaction_id == decision.transaction_id
        assert (receipt.type, receipt.amount, receipt.balance_after) == ("charge", 1_150, 8_850)
        assert receipt.merchant_name == "Cafe" and receipt.items == request.items
    finally:
        phone.disconnect()
        phone.loop_stop()

    settings = running_hub.settings
    where = (["--database-url", settings.database_url] if settings.database_url
             else ["--data-dir", str(settings.data_dir)])
    ok = subprocess.run([str(BIN / "hub"), "ledger", "verify", *where],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # A test corrupting one posting: verify must find it, on either database.
    with running_hub.engine.begin() as conn:  # type: ignore[union-attr]
        conn.exec_driver_sql("update posting set amount = amount + 1 where id = "
                             "(select max(id) from posting)")
    broken = subprocess.run([str(BIN / "hub"), "ledger", "verify", *where],
                            capture_output=True, text=True)
    assert broken.returncode == 1
    assert "does not balance" in broken.stdout
