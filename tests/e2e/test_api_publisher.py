"""`hub api` without a bridge publishes what its calls change, through its own MQTT client
(hub.publisher): the key material at its start and after a revocation, a top-up's
receipt; with the broker away the calls still succeed, what waits is counted, and it all
goes out when the broker is back. A real Mosquitto of each test's own (no retained
message of another test), the real HTTP app, SQLite shared with a `hub worker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from devices.phone import Phone
from devices.topics import guest_topic, keys_topic
from hub.broker_errors import BrokerUnreachable
from hub.cli import app as cli
from hub.config import Settings
from hub.db import create_db_engine, init_db
from hub.demo import VENUE_ID, seed_demo
from hub.models import utcnow
from hub.phone_keys import jwks
from hub.secrets import load_or_create
from hub.server import Hub
from simulators.offline_lock import OfflineLock
from tests.conftest import free_port, hub_settings
from tests.e2e.test_offline_lock import auth_headers, issue
from tests.utils.fleet import Mosquitto
from tests.utils.listener import Listener

pytestmark = pytest.mark.mosquitto


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto as deployed (persistent sessions kept across a restart), this test's own."""
    root = tmp_path / "mosquitto"
    root.mkdir()
    server = Mosquitto(root)
    server.start()
    yield server
    server.stop()


def part(tmp_path: Path, broker: Mosquitto, name: str) -> Settings:
    """One process of the fleet: the same data directory (secrets, SQLite) and broker."""
    return hub_settings(tmp_path, broker_url=f"mqtt://127.0.0.1:{broker.port}",
                        mqtt_protocol="5", mqtt_shared_group="hubs", worker_name=name)


def start(hub: Hub, hubs: list[Hub]) -> Hub:
    hubs.append(hub)  # stopped by the test whatever happens
    hub.start()
    if hub.runs_api:
        hub.serve_in_thread()
    return hub


@pytest.fixture
def hubs() -> Iterator[list[Hub]]:
    started: list[Hub] = []
    yield started
    for hub in reversed(started):
        hub.stop()


def api_url(hub: Hub) -> str:
    return f"http://127.0.0.1:{hub.settings.http_port}/api/v1"


def lock_of(hub: Hub, broker: Mosquitto) -> OfflineLock:
    """Room 105's offline lock, trusting the hub's signing keys (its provisioned anchor)."""
    return OfflineLock(VENUE_ID, "lock-105", "room-105", port=broker.port,
                       anchor=jwks(hub.signing_keys)).connect()


def stats(api: str, headers: dict[str, str]) -> dict[str, Any]:
    answer = httpx.get(f"{api}/stats", headers=headers)
    assert answer.status_code == 200, answer.text
    publisher: dict[str, Any] = answer.json()["publisher"]
    return publisher


def top_up(api: str, headers: dict[str, str], key: str) -> httpx.Response:
    return httpx.post(f"{api}/accounts/wallet-guest-04/topups", headers=headers,
                      json={"amount": 2500, "idempotency_key": key})


def test_the_api_alone_publishes_the_key_material_at_its_start(
        tmp_path: Path, broker: Mosquitto, hubs: list[Hub]) -> None:
    api = start(Hub(part(tmp_path, broker, "api"), demo=True, bridge=False), hubs)
    assert api.bridge is None and api.publisher is not None
    # A lock that boots now finds the venue's JWKS and revocation list retained, signed by
    # this hub's keys: no worker ever ran.
    lock = lock_of(api, broker)
    try:
        wait_for(lambda: lock.keys is not None
                 and {"jwks", "revocations"} <= set(lock.keys.seqs))
        assert lock.refused_material == []
    finally:
        lock.close()


def test_a_revocation_and_a_top_up_through_the_api_reach_the_lock_and_the_guest(
        tmp_path: Path, broker: Mosquitto, hubs: list[Hub]) -> None:
    start(Hub(part(tmp_path, broker, "w1"), demo=True, api=False), hubs)
    api_hub = start(Hub(part(tmp_path, broker, "api"), bridge=False), hubs)
    api = api_url(api_hub)
    headers = auth_headers(api)
    lock = lock_of(api_hub, broker)
    guest = Listener("127.0.0.1", broker.port, [guest_topic(VENUE_ID, "guest-04")])
    try:
        phone = issue(api, headers, "phone-guest-15")
        revoked = httpx.patch(f"{api}/credentials/phone-guest-15", headers=headers,
                              json={"status": "revoked"})
        assert revoked.status_code == 200, revoked.text
        # The retained list a lock reads (and would read at boot) names the revoked key.
        wait_for(lambda: phone.jti in lock.revoked)
        assert lock.refused_material == []

        paid = top_up(api, headers, "desk-1")
        assert paid.status_code == 201, paid.text
        receipts = guest.wait(lambda _t, body: body.get("transaction_id") == paid.json()["id"],
                              timeout=10)
        assert [(r["kind"], r["type"], r["amount"]) for r in receipts] == [
            ("receipt", "topup", 2500)]
        assert guest.invalid == []
        counted = stats(api, headers)
        assert counted["connected"] and counted["published"] >= 2
        assert counted["publish_deferred"] == counted["publish_failed"] == 0
        # Automations run on the workers; their figures come from the database: the API
        # alone answers them.
        assert httpx.get(f"{api}/automations/stats", headers=headers).status_code == 200
    finally:
        guest.close()
        lock.close()


class Inbox:
    """A guest's app with a persistent session: what the broker holds for it while it is
    away (a broker restart) arrives when it is back."""

    def __init__(self, port: int, topic: str) -> None:
        self.bodies: list[bytes] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-guest-app-04",
                                  clean_session=False)
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.bodies.append(bytes(m.payload))
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_with_the_broker_away_the_api_answers_counts_and_publishes_when_it_is_back(
        tmp_path: Path, broker: Mosquitto, hubs: list[Hub]) -> None:
    api_hub = start(Hub(part(tmp_path, broker, "api"), demo=True, bridge=False), hubs)
    assert api_hub.publisher is not None
    api = api_url(api_hub)
    headers = auth_headers(api)
    phone: Phone = issue(api, headers, "phone-guest-15")
    lock = lock_of(api_hub, broker)
    inbox = Inbox(broker.port, guest_topic(VENUE_ID, "guest-04"))
    try:
        wait_for(lambda: lock.keys is not None and "revocations" in lock.keys.seqs)
        broker.stop()
        wait_for(lambda: not httpx.get(f"{api}/health").json()["mqtt_connected"])

        # Committed all the same: the money and the revocation do not wait for the broker.
        paid = top_up(api, headers, "desk-away")
        assert paid.status_code == 201, paid.text
        revoked = httpx.patch(f"{api}/credentials/phone-guest-15", headers=headers,
                              json={"status": "revoked"})
        assert revoked.status_code == 200, revoked.text
        counted = stats(api, headers)
        assert not counted["connected"]
        assert counted["publish_deferred"] == 1  # the receipt waits in memory
        assert counted["retained_deferred"] >= 2  # the key material, left to reconnection
        assert phone.jti not in lock.revoked

        broker.start()
        # The revocation reaches the lock (and is what the broker retains for the next).
        wait_for(lambda: phone.jti in lock.revoked, timeout=30)
        wait_for(lambda: any(paid.json()["id"].encode() in b for b in inbox.bodies),
                 timeout=30)
        assert lock.refused_material == []
        assert stats(api, headers)["connected"]
    finally:
        inbox.close()
        lock.close()


def test_hub_api_refuses_to_start_without_the_workers_broker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_BROKER_URL", raising=False)
    result = CliRunner().invoke(cli, ["api", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "needs --broker" in result.output
    with pytest.raises(ValueError, match="broker_url"):
        Hub(hub_settings(tmp_path), bridge=False)


def test_hub_api_does_not_start_when_the_broker_is_out_of_reach(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path, broker_url=f"mqtt://127.0.0.1:{free_port()}",
                            mqtt_protocol="5")
    hub = Hub(settings, bridge=False)
    with pytest.raises(BrokerUnreachable, match="API's publisher|connection refused"):
        hub.start()  # and what did start is stopped (the leak guard checks)
    assert hub.app is None


def test_hub_api_in_a_process_of_its_own_publishes_on_the_workers_broker(
        tmp_path: Path, broker: Mosquitto) -> None:
    data = tmp_path / "hub"
    load_or_create(data)  # as `hub init` would, before the fleet starts
    engine = create_db_engine(f"sqlite:///{data / 'hub.db'}")
    init_db(engine)
    seed_demo(engine, utcnow())
    engine.dispose()
    port = free_port()
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from hub.cli import app; app()", "api",
             "--broker", f"mqtt://127.0.0.1:{broker.port}", "--data-dir", str(data),
             "--http-port", str(port), "--name", "api1", "--log-level", "INFO"],
            stdout=out, stderr=out, env=dict(os.environ, COLUMNS="200"))
    api = f"http://127.0.0.1:{port}/api/v1"
    keys = Listener("127.0.0.1", broker.port, [keys_topic(VENUE_ID, "revocations")])
    guest = Listener("127.0.0.1", broker.port, [guest_topic(VENUE_ID, "guest-04")])
    try:
        def serving() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"{api}/health").json()["mqtt_connected"] is True
            except httpx.TransportError:
                return False

        wait_for(serving, timeout=60)
        # Published at its start: what a lock booting now reads, retained.
        assert keys.wait(lambda _t, body: "revoked" in body, timeout=10)
        paid = top_up(api, auth_headers(api), "desk-process")
        assert paid.status_code == 201, paid.text
        assert guest.wait(lambda _t, body: body.get("transaction_id") == paid.json()["id"],
                          timeout=10)
    finally:
        keys.close()
        guest.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, log.read_text()
    assert "API publisher 'api1' connected" in log.read_text()
