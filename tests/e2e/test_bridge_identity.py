"""No client can displace the hub's bridge: an anonymous CONNECT with the bridge's client
id, clean session or not, leaves decisions flowing, on the embedded broker (open and
secure) and on Mosquitto."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlmodel import Session

from devices.client import DeviceClient
from devices.contract import WristbandCredential
from hub.db import create_db_engine, init_db
from hub.demo import VENUE_ID, seed_demo, wristband_uid
from hub.models import utcnow
from hub.provisioning import bridge_client_id, broker_auth, mosquitto_config
from hub.secrets import load_or_create
from hub.server import Hub
from tests.conftest import free_port, hub_settings, missing, secured_mosquitto
from tests.utils.hubs import Login, wait_for


def intrude(port: int, client_id: str, *, clean: bool,
            protocol: MQTTProtocolVersion = mqtt.MQTTv311) -> None:
    """Connect anonymously with ``client_id``, publish something, go away."""
    # MQTT 5 has no clean session (clean_start is given to connect instead).
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                    clean_session=clean if protocol == mqtt.MQTTv311 else None)
    try:
        if protocol == mqtt.MQTTv5:
            c.connect("127.0.0.1", port, clean_start=clean)
        else:
            c.connect("127.0.0.1", port)
        c.loop_start()
        c.publish("x", b"y", qos=1)
        time.sleep(0.5)
    except OSError:
        pass  # refused at the door: fine
    finally:
        c.loop_stop()
        c.disconnect()


def taps_flow(hub_: Hub, n: int) -> None:
    host, port = hub_.settings.mqtt_address
    secured = hub_.settings.secure_broker or hub_.settings.mqtt_username is not None
    extra: Login = device_login(hub_, "gate-park-in-1") if secured else {}
    with DeviceClient(VENUE_ID, "gate-park-in-1", host=host, port=port, **extra) as gate:
        decision = gate.tap(WristbandCredential(uid=wristband_uid(n)), timeout=10)
    assert (decision.outcome, decision.reason) == ("allow", "ok")


def device_login(hub_: Hub, device_id: str) -> Login:
    from hub.broker_auth import device_password, device_username
    assert hub_.secrets is not None
    return {"username": device_username(VENUE_ID, device_id),
            "password": device_password(hub_.secrets.broker_key, VENUE_ID, device_id)}


@pytest.fixture(params=["open", "secure"])
def embedded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    running = Hub(hub_settings(tmp_path, secure_broker=request.param == "secure"), demo=True)
    running.start()
    yield running
    running.stop()


@pytest.mark.parametrize("clean", [True, False])
def test_the_embedded_broker_never_gives_the_bridges_id_away(embedded: Hub,
                                                             clean: bool) -> None:
    assert embedded.bridge is not None
    taps_flow(embedded, 1)
    intrude(embedded.settings.mqtt_port, embedded.bridge.client_id, clean=clean)
    taps_flow(embedded, 2)
    snap = embedded.bridge.snapshot()
    assert snap["broker_refusals"].get("takeover", 0) + snap["broker_refusals"].get(
        "login", 0) >= 1  # counted (and logged by the broker)
    assert snap.get("disconnects", 0) == 0 and snap["connected"]


def test_the_client_id_is_unguessable_and_stable_per_worker(tmp_path: Path) -> None:
    secrets = load_or_create(tmp_path)
    main, other = bridge_client_id(secrets, "main"), bridge_client_id(secrets, "w2")
    assert main == bridge_client_id(load_or_create(tmp_path), "main")  # across restarts
    assert main != other and main != "venuehub-bridge"
    assert bridge_client_id(load_or_create(tmp_path / "elsewhere"), "main") != main


@pytest.mark.mosquitto
def test_on_an_open_mosquitto_a_takeover_is_counted_and_the_bridge_comes_back(
        mosquitto: int, tmp_path: Path) -> None:
    running = Hub(hub_settings(tmp_path, broker_url=f"mqtt://127.0.0.1:{mosquitto}",
                               mqtt_protocol="5"), demo=True)
    running.start()
    try:
        assert running.bridge is not None
        taps_flow(running, 3)
        intrude(mosquitto, running.bridge.client_id, clean=True, protocol=mqtt.MQTTv5)
        # MQTT lets a client with the same id take the session over: the hub sees it as a
        # lost connection (counted, logged), reconnects and resubscribes.
        wait_for(lambda: running.bridge is not None
                 and running.bridge.snapshot().get("disconnects", 0) >= 1)
        wait_for(lambda: running.bridge is not None and running.bridge.connected)
        taps_flow(running, 4)
    finally:
        running.stop()


@pytest.mark.mosquitto
def test_a_secured_mosquitto_refuses_the_intruder_and_the_bridge_stays(
        tmp_path: Path) -> None:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        missing("mosquitto")
    data = tmp_path / "data"
    secrets = load_or_create(data)
    engine = create_db_engine(f"sqlite:///{data / 'hub.db'}")
    init_db(engine)
    seed_demo(engine, utcnow())
    with Session(engine) as session:
        passwd, acl = mosquitto_config(session, secrets)
    engine.dispose()
    root = tmp_path / "mosquitto"
    root.mkdir()
    (root / "passwd").write_text(passwd)
    (root / "acl").write_text(acl)
    port = free_port()
    auth = broker_auth(secrets)
    with secured_mosquitto(binary, root, port):
        running = Hub(hub_settings(tmp_path, data_dir=data, broker_url=f"mqtt://127.0.0.1:{port}",
                                   mqtt_protocol="5", mqtt_username=auth.bridge_user,
                                   mqtt_password=auth.bridge_password))
        running.start()
        try:
            assert running.bridge is not None
            taps_flow(running, 5)
            for clean in (True, False):
                intrude(port, running.bridge.client_id, clean=clean, protocol=mqtt.MQTTv5)
            taps_flow(running, 6)
            assert running.bridge.snapshot().get("disconnects", 0) == 0
            assert "not authorised" in (root / "log").read_text()
        finally:
            running.stop()
