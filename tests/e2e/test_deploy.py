"""deploy/: Mosquitto runs with deploy/mosquitto.conf and the files `hub provision
mosquitto` writes, and a hub worker (MQTT 5, shared subscription, TLS) decides a tap
through it; the systemd units pass `systemd-analyze verify`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

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
from tests.conftest import free_port, hub_settings, missing, wait_port

DEPLOY = Path(__file__).parents[2] / "deploy"
UNITS = ("hub-worker@.service", "hub-api.service", "hub-up.service", "hub-migrate.service",
         "hub.target")


def _binary(name: str, *extra: str) -> str:
    found = shutil.which(name) or next((p for p in extra if Path(p).exists()), None)
    if found is None:
        missing(name)
    assert found is not None
    return found


@pytest.fixture
def deployed_mosquitto(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """Mosquitto with deploy/mosquitto.conf, its paths and ports moved into tmp_path."""
    binary = _binary("mosquitto", "/usr/sbin/mosquitto")
    data, out, tls_port, port = tmp_path / "hub", tmp_path / "etc", free_port(), free_port()
    seeded = Hub(hub_settings(tmp_path, secure_broker=True), demo=True)  # the registry
    seeded.start()
    seeded.stop()
    done = CliRunner().invoke(hub_cli, ["provision", "mosquitto", "--out-dir", str(out),
                                        "--data-dir", str(data), "--tls-name", "localhost"])
    assert done.exit_code == 0, done.output
    (tmp_path / "var").mkdir()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    conf = conf.replace("/etc/mosquitto/hub/", f"{out}/").replace(
        "/var/lib/mosquitto/", f"{tmp_path / 'var'}/")
    conf = re.sub(r"^listener 8883$", f"listener {tls_port} 127.0.0.1", conf, flags=re.M)
    conf = re.sub(r"^listener 1883 127.0.0.1$", f"listener {port} 127.0.0.1", conf, flags=re.M)
    assert f"listener {tls_port}" in conf and f"listener {port}" in conf
    # As conftest.secured_mosquitto: started as root, Mosquitto would drop to its own user,
    # who cannot enter pytest's private temp dir.
    (tmp_path / "mosquitto.conf").write_text(conf + ("user root\n" if os.geteuid() == 0
                                                      else ""))
    with open(tmp_path / "mosquitto.log", "wb") as log:
        proc = subprocess.Popen([binary, "-c", str(tmp_path / "mosquitto.conf")],
                                stdout=log, stderr=log)
    try:
        try:
            wait_port(tls_port)
            wait_port(port)
        except TimeoutError:
            raise AssertionError((tmp_path / "mosquitto.log").read_text()) from None
        yield data, tls_port
    finally:
        proc.terminate()
        proc.wait(10)
    assert (tmp_path / "var" / "mosquitto.db").exists()  # persistence on: saved at exit


@pytest.mark.mosquitto
def test_a_worker_decides_through_the_deployed_mosquitto(
        deployed_mosquitto: tuple[Path, int], tmp_path: Path) -> None:
    data, port = deployed_mosquitto
    ca = data / "tls" / "ca.crt"
    secrets = load_or_create(data)
    auth = broker_auth(secrets)
    hub = Hub(hub_settings(tmp_path, secure_broker=True, broker_url=f"mqtts://localhost:{port}",
                           mqtt_tls_ca=ca, mqtt_username=auth.bridge_user,
                           mqtt_password=auth.bridge_password, mqtt_protocol="5",
                           mqtt_shared_group="hub", worker_name="w1"), demo=True)
    hub.start()
    try:
        with DeviceClient(VENUE_ID, "gate-park-in-1", host="localhost", port=port, tls_ca=ca,
                          username=device_username(VENUE_ID, "gate-park-in-1"),
                          password=device_password(secrets.broker_key, VENUE_ID,
                                                   "gate-park-in-1")) as gate:
            decision = gate.tap(WristbandCredential(uid=wristband_uid(3)))
        assert decision.outcome == "allow"
    finally:
        hub.stop()


@pytest.mark.parametrize("unit", UNITS)
def test_the_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # not part of what CI installs (tests/run.sh): a check where it is
        pytest.skip("systemd-analyze not installed")
    # The hub is not installed at /opt/hub on a test machine: point ExecStart at a binary
    # that is there; everything else is checked as shipped.
    text = (DEPLOY / unit).read_text()
    assert "NoNewPrivileges=yes" in text and "ProtectSystem=strict" in text or \
        unit == "hub.target"
    name = unit.replace("@.", "@1.")
    (tmp_path / name).write_text(text.replace("/opt/hub/venv/bin/hub", "/bin/true"))
    done = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / name)],
                          capture_output=True, text=True, timeout=60)
    problems = [line for line in done.stderr.splitlines()
                if str(tmp_path) in line or name in line]
    assert done.returncode == 0 and not problems, done.stderr
