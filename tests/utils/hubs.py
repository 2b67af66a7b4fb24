"""Running demo hubs in tests, and waiting for what they do."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypedDict

import pytest

from hub.bridge import Bridge
from hub.server import Hub
from tests.conftest import hub_settings


def wait_for(predicate: Callable[[], object], timeout: float = 5.0, every: float = 0.02) -> None:
    """Return once ``predicate()`` is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)


class Login(TypedDict, total=False):
    """A device's broker login, as DeviceClient's keyword arguments (empty: anonymous)."""

    username: str
    password: str


def bridge_of(hub_: Hub) -> Bridge:
    """The bridge of a running hub (one started with MQTT)."""
    assert hub_.bridge is not None, "this hub runs no bridge"
    return hub_.bridge


@contextmanager
def demo_hub_on(broker: str, request: pytest.FixtureRequest, tmp_path: Path, *,
                http: bool = True) -> Iterator[Hub]:
    """The demo hub behind the embedded broker (``embedded``) or the session's Mosquitto
    (``mosquitto``, MQTT 5), stopped afterwards."""
    overrides: dict[str, object] = {}
    if broker == "mosquitto":
        port = request.getfixturevalue("mosquitto")
        overrides = {"broker_url": f"mqtt://127.0.0.1:{port}", "mqtt_protocol": "5"}
    running = Hub(hub_settings(tmp_path, **overrides), demo=True)
    running.start()
    try:
        if http:
            running.serve_in_thread()
        yield running
    finally:
        running.stop()
