"""Stopping the embedded broker: quick, bounded, idempotent, and nothing left on its loop.

A task left pending on the broker's loop is finalised later by the garbage collector,
during whatever test runs then, and fails there ("Event loop is closed" raised from a
coroutine's cleanup): with ``filterwarnings = error`` that fails an unrelated test.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub import broker as broker_module
from hub.broker import EmbeddedBroker
from tests.conftest import free_port


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """What the interpreter reports as unraisable during the test and a final gc."""
    seen: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook",
                        lambda u: seen.append(f"{u.err_msg or ''} {u.object!r}: {u.exc_value!r}"))
    yield seen
    gc.collect()


def assert_wound_down(broker: EmbeddedBroker, unraisable: list[str]) -> None:
    loop = broker._loop
    assert not broker._thread.is_alive()
    assert loop.is_closed()
    assert not asyncio.all_tasks(loop)  # tasks of that loop not done (works on a closed loop)
    gc.collect()
    assert unraisable == []


def on_loop(broker: EmbeddedBroker, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, broker._loop).result(5)


def test_stop_while_clients_keep_sending_is_quick_and_leaves_nothing(
        unraisable: list[str]) -> None:
    # Clients that never pause: amqtt's reader tasks used to swallow the cancellation
    # of the shutdown (asyncio.wait_for on 3.11) and keep reading; stop() waited out its
    # timeout, then closed the loop with the sessions' tasks still pending.
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port)
    broker.start()
    clients: list[mqtt.Client] = []
    senders: list[threading.Thread] = []
    done = threading.Event()

    def send(client: mqtt.Client) -> None:
        while not done.is_set():
            client.publish("t/x", b"payload", qos=1)
            time.sleep(0.0005)

    try:
        for n in range(4):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sender-{n}")
            client.connect("127.0.0.1", port, keepalive=30)
            client.loop_start()
            client.subscribe("t/#", qos=1)
            clients.append(client)
            senders.append(threading.Thread(target=send, args=(client,), daemon=True))
        for sender in senders:
            sender.start()
        time.sleep(0.3)
        started = time.monotonic()
        broker.stop()
        took = time.monotonic() - started
    finally:
        done.set()
        for sender in senders:
            sender.join(5)
        for client in clients:
            client.disconnect()
            client.loop_stop()
        broker.stop()
    assert took < 3.0
    assert_wound_down(broker, unraisable)


def test_stop_cancels_whatever_is_left_on_the_loop(unraisable: list[str]) -> None:
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    ended: list[str] = []

    async def stubborn() -> None:
        # Swallows one cancellation (as a 3.11 asyncio.wait_for can), then waits on a
        # queue: a Queue.get finalised after its loop closed raises "Event loop is closed".
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        try:
            await asyncio.Queue[int]().get()
        finally:
            ended.append("stubborn")

    async def numbers() -> AsyncIterator[int]:
        try:
            while True:
                yield 1
                await asyncio.sleep(3600)
        finally:
            ended.append("generator")

    async def leave_behind() -> None:
        asyncio.get_running_loop().create_task(stubborn())
        generator = numbers()
        await anext(generator)
        leave_behind.generator = generator  # type: ignore[attr-defined]  # keep it suspended

    on_loop(broker, leave_behind())
    del leave_behind.generator  # type: ignore[attr-defined]
    started = time.monotonic()
    broker.stop()
    assert time.monotonic() - started < 3.0
    assert sorted(ended) == ["generator", "stubborn"]
    assert_wound_down(broker, unraisable)


def test_stop_is_bounded_when_amqtt_never_finishes(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        unraisable: list[str]) -> None:
    async def hang(self: Any) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(broker_module._Broker, "shutdown", hang)
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="hub.broker"):
        broker.stop(timeout=1.0)
    assert time.monotonic() - started < 1.5
    assert "did not shut down cleanly" in caplog.text
    assert_wound_down(broker, unraisable)


def test_stop_twice_or_before_start(unraisable: list[str]) -> None:
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    broker.stop()
    started = time.monotonic()
    broker.stop()
    assert time.monotonic() - started < 0.1
    assert_wound_down(broker, unraisable)

    never_started = EmbeddedBroker("127.0.0.1", free_port())
    never_started.stop()
    never_started.stop()
    assert never_started._loop.is_closed()


def test_a_busy_port_fails_start_and_leaves_nothing_running(unraisable: list[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = EmbeddedBroker("127.0.0.1", taken.getsockname()[1])
        with pytest.raises(OSError, match="cannot listen"):
            broker.start()
    broker.stop()
    assert_wound_down(broker, unraisable)
