"""The embedded broker in its own process: serves, counts refusals, refuses a busy port,
and never outlives the hub that started it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.broker_process import BrokerProcess
from tests.conftest import free_port
from tests.utils import leaks


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def connect(port: int, username: str | None = None, password: str | None = None) -> int:
    """CONNACK's reason code (0: accepted)."""
    result: list[int] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{time.monotonic_ns()}")
    if username:
        c.username_pw_set(username, password)
    c.on_connect = lambda _c, _u, _f, rc, _p: result.append(rc.value)
    c.connect("127.0.0.1", port)
    c.loop_start()
    deadline = time.monotonic() + 5
    while not result and time.monotonic() < deadline:
        time.sleep(0.02)
    c.loop_stop()
    c.disconnect()
    assert result, "no CONNACK"
    return result[0]


def test_it_serves_counts_refusals_and_stops() -> None:
    port = free_port()
    broker = BrokerProcess("127.0.0.1", port, bridge_login=("bridge", "s3cret"))
    broker.start()
    try:
        assert broker.alive and port_open(port)
        assert connect(port) == 0  # open broker: anyone
        assert connect(port, "bridge", "wrong") != 0  # but not as the bridge
        deadline = time.monotonic() + 5
        while broker.refusals.get("login", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert broker.refusals["login"] == 1
    finally:
        broker.stop()
    assert not broker.alive and not port_open(port)
    broker.stop()  # twice is fine


def test_a_busy_port_is_an_oserror_naming_it() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        broker = BrokerProcess("127.0.0.1", port)
        with pytest.raises(OSError, match=str(port)):
            broker.start()
        assert not broker.alive


def test_a_stopped_broker_holds_no_descriptor_whoever_keeps_it() -> None:
    # Started and stopped, refused its port, or never started: whatever still refers to it
    # (a hub kept alive by some cache, a test's variable) keeps no pipe open.
    warm = BrokerProcess("127.0.0.1", free_port())  # the resource tracker, the shared heap
    warm.start()
    warm.stop()
    before = len(leaks.descriptors())
    kept = [BrokerProcess("127.0.0.1", free_port()), BrokerProcess("127.0.0.1", free_port())]
    kept[0].start()
    kept[0].stop()
    kept[1].stop()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        kept.append(BrokerProcess("127.0.0.1", busy.getsockname()[1]))
        with pytest.raises(OSError):
            kept[2].start()
    assert len(leaks.descriptors()) <= before
    assert not any(broker.alive for broker in kept) and kept[1].take_refusals() == []
    assert str(kept[0].port) in repr(kept[0])


def test_the_broker_dies_with_a_killed_hub() -> None:
    port = free_port()
    script = textwrap.dedent(f"""
        import time
        from hub.broker_process import BrokerProcess
        b = BrokerProcess("127.0.0.1", {port})
        b.start()
        print("up", flush=True)
        time.sleep(60)
    """)
    hub = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                           cwd=os.getcwd())
    try:
        assert hub.stdout is not None and hub.stdout.readline().strip() == "up"
        assert port_open(port)
        hub.send_signal(signal.SIGKILL)
        hub.wait(10)
        deadline = time.monotonic() + 15
        while port_open(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not port_open(port), "the broker outlived the hub that started it"
    finally:
        if hub.poll() is None:
            hub.kill()
