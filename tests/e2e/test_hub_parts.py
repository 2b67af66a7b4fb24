"""`hub api` and `hub worker`: the same Hub, started in part; each starts only its part."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from devices.client import DeviceClient
from devices.contract import WristbandCredential
from hub.cli import app
from hub.demo import VENUE_ID, wristband_uid
from hub.server import Hub
from tests.conftest import free_port, hub_settings


@pytest.mark.mosquitto
def test_the_api_alone_serves_http_and_starts_no_broker_nor_bridge(tmp_path: Path,
                                                                   mosquitto: int) -> None:
    # It publishes on the workers' broker (tests/e2e/test_api_publisher.py).
    settings = hub_settings(tmp_path, broker_url=f"mqtt://127.0.0.1:{mosquitto}")
    hub = Hub(settings, demo=True, bridge=False)
    hub.start()
    try:
        hub.serve_in_thread()
        assert hub.bridge is None and hub.broker is None and hub.scheduler is None
        # Nothing listens where the embedded broker would.
        with pytest.raises(OSError):
            DeviceClient(VENUE_ID, "gate-park-in-1", port=settings.mqtt_port).connect(2)
        answer = httpx.get(f"http://{settings.http_host}:{settings.http_port}/openapi.json")
        assert answer.status_code == 200
    finally:
        hub.stop()


@pytest.mark.mosquitto
def test_a_worker_decides_taps_and_serves_no_http(tmp_path: Path, mosquitto: int) -> None:
    http_port = free_port()
    settings = hub_settings(tmp_path, broker_url=f"mqtt://127.0.0.1:{mosquitto}",
                            mqtt_protocol="5", mqtt_shared_group="parts", http_port=http_port)
    hub = Hub(settings, demo=True, api=False)
    hub.start()
    try:
        assert hub.app is None and hub.broker is None and hub.retention is not None
        with DeviceClient(VENUE_ID, "gate-park-in-1", port=mosquitto, mqtt5=True) as gate:
            decision = gate.tap(WristbandCredential(uid=wristband_uid(3)), timeout=10)
        assert decision.reason == "ok"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=2)
        # serve() without the API waits for the signal; stop() ends it.
        waiting = threading.Thread(target=hub.serve, daemon=True)
        waiting.start()
        assert waiting.is_alive()
    finally:
        hub.stop()


@pytest.mark.parametrize("given", [[], ["--broker", "mqtt://127.0.0.1:1"],
                                   ["--database-url", "sqlite:///x.db"]])
def test_hub_worker_refuses_to_start_without_a_broker_and_a_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: list[str]) -> None:
    monkeypatch.delenv("HUB_BROKER_URL", raising=False)
    monkeypatch.delenv("HUB_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["worker", "--data-dir", str(tmp_path), *given])
    assert result.exit_code == 2, result.output
    assert "needs --broker" in result.output and "--database-url" in result.output
    assert not (tmp_path / "hub.db").exists()  # refused before touching anything


def test_a_hub_runs_at_least_one_part(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Hub(hub_settings(tmp_path), bridge=False, api=False)
