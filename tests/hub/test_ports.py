"""A port the hub cannot listen on is told by which listener, where, and why."""

from __future__ import annotations

import errno
import logging
import pickle
from pathlib import Path

import pytest

from hub.broker import EmbeddedBroker
from hub.broker_process import BrokerProcess
from hub.ports import CannotListen, check_free
from hub.tls import TlsListener, ensure_tls
from tests.conftest import free_port


def test_a_free_port_passes() -> None:
    check_free("mqtt_port", "127.0.0.1", free_port())


def test_a_busy_port_is_named_with_its_listener(busy_port: int) -> None:
    with pytest.raises(CannotListen) as caught:
        check_free("mqtt_tls_port", "127.0.0.1", busy_port)
    exc = caught.value
    assert (exc.listener, exc.host, exc.port) == ("mqtt_tls_port", "127.0.0.1", busy_port)
    assert exc.in_use and exc.errno == errno.EADDRINUSE
    assert str(exc) == (f"the embedded MQTT broker's TLS listener cannot listen on "
                        f"127.0.0.1:{busy_port}: {exc.strerror}")


def test_an_address_not_on_this_machine_is_not_called_busy() -> None:
    with pytest.raises(CannotListen) as caught:
        check_free("http_port", "no-such-host.invalid", 8000)
    assert not caught.value.in_use and caught.value.errno == errno.EADDRNOTAVAIL


def test_it_crosses_a_process_boundary_whole(busy_port: int) -> None:
    with pytest.raises(CannotListen) as caught:
        check_free("mqtt_port", "127.0.0.1", busy_port)
    again = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(again, CannotListen)
    assert repr(again) == repr(caught.value) and str(again) == str(caught.value)


def tls_listener(tmp_path: Path, port: int) -> TlsListener:
    files = ensure_tls(tmp_path, [])
    return TlsListener(port, files.server_cert, files.server_key)


def test_the_embedded_broker_names_only_the_busy_port(tmp_path: Path, busy_port: int) -> None:
    plain = EmbeddedBroker("127.0.0.1", free_port(), tls=tls_listener(tmp_path, busy_port))
    with pytest.raises(CannotListen) as caught:
        plain.start()
    assert caught.value.listener == "mqtt_tls_port" and caught.value.port == busy_port
    assert str(plain.port) not in str(caught.value)
    plain.stop()
    tls = EmbeddedBroker("127.0.0.1", busy_port, tls=tls_listener(tmp_path, free_port()))
    with pytest.raises(CannotListen) as caught:
        tls.start()
    assert caught.value.listener == "mqtt_port" and "TLS" not in str(caught.value)
    tls.stop()


def test_amqtt_logs_no_traceback_when_the_port_is_lost_after_the_check(
        busy_port: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Taken between the check and amqtt's bind: start() still raises, and says where.
    monkeypatch.setattr("hub.broker.check_free", lambda *_args: None)
    broker = EmbeddedBroker("127.0.0.1", busy_port)
    with caplog.at_level(logging.DEBUG), pytest.raises(OSError, match=str(busy_port)):
        broker.start()
    broker.stop()
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("amqtt")]
    assert "Broker startup failed" not in caplog.text


def test_the_broker_process_hands_the_port_back(busy_port: int) -> None:
    broker = BrokerProcess("127.0.0.1", busy_port)
    with pytest.raises(CannotListen) as caught:
        broker.start()
    assert caught.value.listener == "mqtt_port" and caught.value.port == busy_port
    assert not broker.alive
