"""The device SDK against a real broker (the hub's embedded amqtt on a free port)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devices.client import broker_round_trips, credential_from_text
from devices.contract import PhoneKeyCredential, WristbandCredential
from hub.broker import EmbeddedBroker
from tests.conftest import free_port


@pytest.fixture(scope="module")
def broker_port() -> Iterator[int]:
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    yield broker.port
    broker.stop()


def test_broker_round_trips_measure_each_message(broker_port: int) -> None:
    samples = broker_round_trips("127.0.0.1", broker_port, 50)
    assert len(samples) == 50
    assert all(0 < s < 1000 for s in samples)


def test_broker_round_trips_fail_clearly_without_a_broker() -> None:
    with pytest.raises(OSError):
        broker_round_trips("127.0.0.1", free_port(), 1)


@pytest.mark.parametrize(("text", "kind"), [
    ("04A1B2C3D4E501", WristbandCredential), ("04a1b2c3", WristbandCredential),
    ("pk-guest-01", PhoneKeyCredential), ("04A1B2C", PhoneKeyCredential),
])
def test_credential_from_text(text: str, kind: type) -> None:
    assert isinstance(credential_from_text(text), kind)
