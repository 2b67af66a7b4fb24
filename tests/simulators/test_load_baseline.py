"""`hub-sim load`'s broker-only baseline: when the broker will not echo the probe, the run
goes on without it and says why, instead of ending in a traceback."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import asdict, replace

import pytest
from rich.console import Console

from devices.client import NoEcho, broker_round_trips
from hub.broker import EmbeddedBroker
from hub.broker_auth import BrokerAuth, device_password
from simulators import load
from simulators.load import LoadReport, TapResult, render_report, summarize
from simulators.readers import Broker
from tests.conftest import free_port

SECRET = b"0123456789abcdef0123456789abcdef"
DEVICE = "demo-resort.lock-101"


@pytest.fixture
def closed_broker() -> Iterator[int]:
    broker = EmbeddedBroker("127.0.0.1", free_port(),
                            auth=BrokerAuth(SECRET, "hub-bridge", "bridge-password-123"))
    broker.start()
    yield broker.port
    broker.stop()


def test_a_refused_probe_is_no_echo_at_once(closed_broker: int) -> None:
    # A device may not subscribe to the probe's topic: the broker says so in its SUBACK.
    with pytest.raises(NoEcho, match="refused the probe's subscription"):
        broker_round_trips("127.0.0.1", closed_broker, 5, username=DEVICE,
                           password=device_password(SECRET, "demo-resort", "lock-101"),
                           timeout=30)


def report(skipped: str) -> LoadReport:
    one_tap = [TapResult("lock-101", 1.0, "allow", "ok")]
    return replace(summarize(one_tap, requested_rate=1.0, duration_s=1.0, devices=1,
                             send_elapsed_s=1.0), baseline_skipped=skipped)


def test_no_echo_skips_the_baseline_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_echo(*_args: object, **_kwargs: object) -> list[float]:
        raise NoEcho("the broker at h:1 did not pass the probe message back within 5s")

    monkeypatch.setattr(load, "broker_round_trips", no_echo)
    shown = io.StringIO()
    baseline, skipped = load._baseline(Broker(host="h", port=1, username="u"),
                                       Console(file=shown, width=200))
    assert baseline is None and skipped is not None and "did not pass the probe" in skipped
    assert "broker-only baseline skipped: the broker at h:1" in shown.getvalue()


def test_a_closed_broker_skips_it_quietly_and_the_report_says_so() -> None:
    shown = io.StringIO()
    baseline, skipped = load._baseline(
        Broker(host="h", port=1, logins={"lock-101": ("u", "p")}), Console(file=shown))
    assert baseline is None and skipped is not None and shown.getvalue() == ""
    table = io.StringIO()
    render_report(report(skipped), Console(file=table, width=200))
    assert "skipped" in table.getvalue()
    assert asdict(report(skipped))["baseline_skipped"] == skipped
