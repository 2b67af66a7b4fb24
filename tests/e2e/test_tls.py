"""TLS on the wire: the embedded broker's TLS listener, and a real Mosquitto with the TLS
settings `hub provision mosquitto` writes, with the hub's bridge connecting over TLS.

Each test shows both sides: a client trusting the venue CA gets in and has its tap
decided; one that trusts another CA (or speaks plain MQTT to the TLS port, or brings
the wrong password) does not.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from devices.client import DeviceClient
from devices.contract import WristbandCredential
from hub.broker_auth import device_password, device_username
from hub.cli import app as hub_cli
from hub.demo import VENUE_ID, wristband_uid
from hub.provisioning import broker_auth
from hub.secrets import load_or_create
from hub.server import Hub
from hub.tls import ensure_tls
from tests.conftest import free_port, hub_settings, missing, wait_port
from tests.utils.hubs import Login

BIN = Path(sys.executable).parent


@pytest.fixture
def tls_hub(tmp_path: Path) -> Iterator[Hub]:
    """`hub up --demo` with its default, closed broker, listening with TLS too."""
    hub = Hub(hub_settings(tmp_path, secure_broker=True, mqtt_tls_port=free_port()), demo=True)
    hub.start()
    yield hub
    hub.stop()


def sheet_of(hub: Hub) -> dict[str, Any]:
    path = hub.settings.data_dir / "demo-provisioning.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def other_ca(tmp_path: Path) -> Path:
    """Another venue's CA: valid, but not the one that signed this broker's certificate."""
    return ensure_tls(tmp_path / "elsewhere").ca_cert


def test_a_demo_device_taps_over_tls_with_the_sheets_ca(tls_hub: Hub) -> None:
    sheet = sheet_of(tls_hub)
    broker = sheet["broker"]
    assert broker["tls_port"] == tls_hub.settings.mqtt_tls_port
    assert Path(broker["ca"]) == (tls_hub.settings.data_dir / "tls" / "ca.crt").resolve()
    gate = sheet["devices"]["gate-park-in-1"]
    # By name and by address: the certificate carries both.
    for n, host in ((2, "localhost"), (4, "127.0.0.1")):
        with DeviceClient(VENUE_ID, "gate-park-in-1", host=host, port=broker["tls_port"],
                          username=gate["username"], password=gate["password"],
                          tls_ca=broker["ca"]) as client:
            decision = client.tap(WristbandCredential(uid=wristband_uid(n)))
        assert decision.outcome == "allow" and decision.guest_name, decision


def test_hub_sim_ca_picks_the_sheets_tls_port(tls_hub: Hub) -> None:
    sheet_path = tls_hub.settings.data_dir / "demo-provisioning.json"
    ca = sheet_of(tls_hub)["broker"]["ca"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_SIM_")}
    # No --broker: with --ca, the port is the sheet's TLS port, not 1883.
    done = subprocess.run(
        [str(BIN / "hub-sim"), "--provisioning", str(sheet_path), "--ca", ca, "tap",
         "--device", "gate-park-in-1", "--credential", "04A10000000007"],
        capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ALLOW" in done.stdout and "Welcome, Gus" in done.stdout


def test_clients_not_trusting_the_venue_ca_fail_the_handshake(tls_hub: Hub,
                                                              tmp_path: Path) -> None:
    sheet = sheet_of(tls_hub)
    port = sheet["broker"]["tls_port"]
    gate = sheet["devices"]["gate-park-in-1"]
    login = {"username": gate["username"], "password": gate["password"]}
    with pytest.raises(ssl.SSLCertVerificationError):
        DeviceClient(VENUE_ID, "gate-park-in-1", port=port, tls_ca=other_ca(tmp_path),
                     **login).connect(timeout=3)
    system = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    if Path(system).exists():  # the public CAs do not vouch for a venue's broker either
        with pytest.raises(ssl.SSLCertVerificationError):
            DeviceClient(VENUE_ID, "gate-park-in-1", port=port, tls_ca=system,
                         **login).connect(timeout=3)
    # Plain MQTT to the TLS port: the broker reads no CONNECT, the client no CONNACK.
    plain = DeviceClient(VENUE_ID, "gate-park-in-1", port=port, **login)
    with pytest.raises((ConnectionError, OSError)):
        plain.connect(timeout=3)
    plain.close()


def test_the_tls_listener_checks_logins_as_the_plain_one(tls_hub: Hub) -> None:
    sheet = sheet_of(tls_hub)
    broker = sheet["broker"]
    other = sheet["devices"]["gate-park-in-2"]
    wrong = DeviceClient(VENUE_ID, "gate-park-in-1", port=broker["tls_port"],
                         username=sheet["devices"]["gate-park-in-1"]["username"],
                         password=other["password"], tls_ca=broker["ca"])
    with pytest.raises(ConnectionError):
        wrong.connect(timeout=3)
    wrong.close()
    anonymous = DeviceClient(VENUE_ID, "gate-park-in-1", port=broker["tls_port"],
                             tls_ca=broker["ca"])
    with pytest.raises(ConnectionError):
        anonymous.connect(timeout=3)
    anonymous.close()


# ------------------------------------------------------------------ Mosquitto


def mosquitto_binary() -> str:
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                           if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        missing("mosquitto")
    assert binary is not None
    return binary


@pytest.fixture
def provisioned_mosquitto(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A demo registry, `hub provision mosquitto` (TLS only), and Mosquitto run with the
    mosquitto.conf it wrote; yields (data dir, TLS port)."""
    binary = mosquitto_binary()
    data, out, port = tmp_path / "hub", tmp_path / "mosquitto", free_port()
    seeded = Hub(hub_settings(tmp_path, secure_broker=True), demo=True)  # the registry
    seeded.start()
    seeded.stop()
    done = CliRunner().invoke(hub_cli, ["provision", "mosquitto", "--out-dir", str(out),
                                        "--data-dir", str(data), "--port", "0",
                                        "--tls-port", str(port), "--bind", "127.0.0.1"])
    assert done.exit_code == 0, done.output
    conf = (out / "mosquitto.conf").read_text()
    assert "set_tcp_nodelay true" in conf and f"listener {port} 127.0.0.1" in conf
    assert f"cafile {(out / 'ca.crt').resolve()}" in conf
    assert (out / "ca.crt").read_bytes() == (data / "tls" / "ca.crt").read_bytes()
    assert (out / "server.key").stat().st_mode & 0o077 == 0
    # As conftest.secured_mosquitto: Mosquitto started as root drops to its own user before
    # reading the files, and pytest's temp dir is ours alone.
    extra = ("user root\n" if os.geteuid() == 0 else "") + "persistence false\nlog_dest stderr\n"
    run_conf = tmp_path / "run.conf"
    run_conf.write_text(conf + extra)
    with open(tmp_path / "mosquitto.log", "wb") as log:
        proc = subprocess.Popen([binary, "-c", str(run_conf)], stdout=log, stderr=log)
    try:
        try:
            wait_port(port)
        except TimeoutError:
            raise AssertionError((tmp_path / "mosquitto.log").read_text()) from None
        yield data, port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.mosquitto
def test_provisioned_mosquitto_speaks_tls_to_devices_and_the_bridge(
        provisioned_mosquitto: tuple[Path, int], tmp_path: Path) -> None:
    data, port = provisioned_mosquitto
    ca = data / "tls" / "ca.crt"
    secrets = load_or_create(data)
    auth = broker_auth(secrets)
    # The hub's bridge over TLS to that Mosquitto, trusting the venue CA (HUB_MQTT_TLS_CA).
    hub = Hub(hub_settings(tmp_path, secure_broker=True, broker_url=f"mqtts://localhost:{port}",
                           mqtt_tls_ca=ca, mqtt_username=auth.bridge_user,
                           mqtt_password=auth.bridge_password), demo=True)
    hub.start()
    try:
        login: Login = {"username": device_username(VENUE_ID, "gate-park-in-1"),
                 "password": device_password(secrets.broker_key, VENUE_ID, "gate-park-in-1")}
        with DeviceClient(VENUE_ID, "gate-park-in-1", host="localhost", port=port,
                          tls_ca=ca, **login) as gate:
            decision = gate.tap(WristbandCredential(uid=wristband_uid(3)))
        assert decision.outcome == "allow"
        # Another device's password: Mosquitto's password file refuses it, over TLS too.
        wrong = DeviceClient(VENUE_ID, "gate-park-in-1", port=port, tls_ca=ca,
                             username=login["username"],
                             password=device_password(secrets.broker_key, VENUE_ID,
                                                      "gate-park-in-2"))
        with pytest.raises(ConnectionError):
            wrong.connect(timeout=3)
        wrong.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            DeviceClient(VENUE_ID, "gate-park-in-1", port=port, tls_ca=other_ca(tmp_path),
                         **login).connect(timeout=3)
    finally:
        hub.stop()
