"""An unreachable broker is told with its address and what to check."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.bridge import Bridge
from hub.broker_errors import BrokerUnreachable, connect_problem, login_problem
from hub.config import Settings
from tests.conftest import free_port


@pytest.mark.parametrize(("exc", "tls", "says"), [
    (ConnectionRefusedError(111, "Connection refused"), False, "is the broker running"),
    (socket.gaierror(-2, "Name or service not known"), False, "no such host"),
    (TimeoutError("timed out"), False, "firewall"),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), True,
     "plain MQTT (mqtt://, usually 1883)"),
    (ConnectionResetError(104, "Connection reset by peer"), True, "plain MQTT"),
])
def test_each_failure_says_what_to_check(exc: OSError, tls: bool, says: str) -> None:
    assert says in connect_problem(exc, port=1883, tls=tls)


def test_an_untrusted_certificate_points_at_the_ca_setting() -> None:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "self-signed certificate"
    said = connect_problem(exc, port=8883, tls=True)
    assert "self-signed certificate" in said and "HUB_MQTT_TLS_CA" in said


def test_a_refused_login_points_at_the_bridge_credentials() -> None:
    said = login_problem("Not authorized", external=True)
    assert "Not authorized" in said and "HUB_MQTT_USERNAME" in said


def test_the_message_names_the_address_and_the_flag() -> None:
    exc = BrokerUnreachable("mqtt://10.0.0.5:1883", "no answer", external=True)
    assert str(exc) == ("cannot reach the MQTT broker at mqtt://10.0.0.5:1883 (--broker, "
                        "HUB_BROKER_URL): no answer")
    assert isinstance(exc, ConnectionError)


def test_the_bridge_raises_it_for_a_dead_broker(tmp_path: Path) -> None:
    port = free_port()  # nobody listens: refused at once
    engine = sa.create_engine("sqlite://")
    bridge = Bridge(Settings(data_dir=tmp_path, broker_url=f"mqtt://127.0.0.1:{port}"), engine)
    try:
        with pytest.raises(BrokerUnreachable) as caught:
            bridge.start(timeout=5)
    finally:
        bridge.stop(1)
        engine.dispose()
    assert f"mqtt://127.0.0.1:{port}" in str(caught.value)
    assert "--broker" in str(caught.value) and "is the broker running" in str(caught.value)
