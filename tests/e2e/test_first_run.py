"""`hub up` as a newcomer meets it when something is wrong: one clear line, the flag to
change, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

BIN = Path(sys.executable).parent


def hub_up(data_dir: Path, *args: str, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "hub"), "up", "--data-dir", str(data_dir), *args],
        check=False, capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "300", **(env or {})})


def told(done: subprocess.CompletedProcess[str]) -> str:
    said = done.stdout + done.stderr
    assert "Traceback" not in said and "amqtt" not in said, said
    return " ".join(said.split())  # as one line, whatever the terminal's width did


def test_a_busy_mqtt_port_names_it_and_its_flag(tmp_path: Path, busy_port: int) -> None:
    tls_port = free_port()
    said = told(done := hub_up(tmp_path, "--mqtt-port", str(busy_port), "--mqtt-tls-port",
                               str(tls_port), "--http-port", str(free_port())))
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{busy_port}" in said and "--mqtt-port" in said
    assert str(tls_port) not in said and "--mqtt-tls-port" not in said


def test_a_busy_tls_port_names_it_and_how_to_drop_it(tmp_path: Path, busy_port: int) -> None:
    plain = free_port()
    said = told(done := hub_up(tmp_path, "--mqtt-port", str(plain), "--mqtt-tls-port",
                               str(busy_port), "--http-port", str(free_port())))
    assert done.returncode == 1
    assert f"TLS listener cannot listen on 127.0.0.1:{busy_port}" in said
    assert "--mqtt-tls-port 0 for no TLS listener" in said and str(plain) not in said


def test_a_dead_external_broker_names_its_address(tmp_path: Path) -> None:
    dead = free_port()
    said = told(done := hub_up(tmp_path, "--broker", f"mqtt://127.0.0.1:{dead}",
                               "--http-port", str(free_port())))
    assert done.returncode == 1
    assert f"cannot reach the MQTT broker at mqtt://127.0.0.1:{dead} (--broker" in said
    assert "is the broker running" in said
    assert "draining the bridge" not in said  # nothing ran: nothing to drain


def test_a_bad_variable_is_named_with_its_flag(tmp_path: Path) -> None:
    said = told(done := hub_up(tmp_path, env={"HUB_MQTT_PORT": "abc"}))
    assert done.returncode == 2
    assert "HUB_MQTT_PORT (--mqtt-port): not a valid integer" in said
    assert "mqtt_port" not in said
