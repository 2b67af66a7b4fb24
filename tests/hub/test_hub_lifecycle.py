"""A hub leaves nothing behind: a failed start stops what it had started, and a stopped hub
is freed with everything it held."""

from __future__ import annotations

import gc
import threading
import weakref
from pathlib import Path

import pytest

from hub.broker_errors import BrokerUnreachable
from hub.broker_process import BrokerProcess
from hub.server import Hub
from tests.conftest import hub_settings
from tests.utils import leaks
from tests.utils.hubs import wait_for


def test_a_failed_start_stops_what_it_started(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The last step fails, once the broker's process, the login follower, the audit
    # thread, automations and the scheduler all run: its caller has no hub to stop.
    def unreachable(*_args: object, **_kwargs: object) -> None:
        raise BrokerUnreachable("mqtt://127.0.0.1:1", "no answer", external=False)

    monkeypatch.setattr("hub.server.Bridge.start", unreachable)
    threads, children = set(threading.enumerate()), set(leaks.children())
    hub = Hub(hub_settings(tmp_path, secure_broker=True), demo=True)
    with pytest.raises(BrokerUnreachable):
        hub.start()
    assert isinstance(hub.broker, BrokerProcess) and not hub.broker.alive
    assert set(leaks.children()) <= children

    def ours_running() -> list[str]:
        return [t.name for t in set(threading.enumerate()) - threads
                if t.name.startswith("hub-") and t.is_alive()]

    wait_for(lambda: not ours_running(), timeout=5)


def test_a_stopped_hub_is_freed(tmp_path: Path) -> None:
    # Anything that keeps a stopped hub keeps its bridge's client, its databases and, before
    # they were closed on stop, its broker's pipes: FastAPI's caches once kept every app.
    hub = Hub(hub_settings(tmp_path), demo=True)
    hub.start()
    hub.serve_in_thread()
    hub.stop()
    gone = weakref.ref(hub)
    del hub
    gc.collect()
    assert gone() is None
