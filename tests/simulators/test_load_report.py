"""The load generator's pure parts: percentiles, the report, the open-loop schedule."""

from __future__ import annotations

import json
import math
import random
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.client import HubError
from devices.contract import (
    Decision,
    EntryReason,
    ErrorCode,
    ErrorMessage,
    WristbandCredential,
    utcnow,
)
from simulators.load import TIMEOUT, TapResult, Target, generate, percentile, summarize

values = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200)
ps = st.floats(min_value=0.01, max_value=100)


@given(values, ps)
def test_percentile_is_the_nearest_rank(xs: list[float], p: float) -> None:
    got = percentile(xs, p)
    assert got in xs
    n = len(xs)
    # Nearest rank: at least p% of the values are <= it, and fewer than p% are below it.
    assert sum(1 for x in xs if x <= got) >= p * n / 100 - 1e-9
    assert sum(1 for x in xs if x < got) < p * n / 100 + 1e-9


@given(values)
def test_percentile_is_monotonic_and_ends_at_the_max(xs: list[float]) -> None:
    ranks = [percentile(xs, p) for p in (1, 25, 50, 75, 95, 99, 100)]
    assert ranks == sorted(ranks)
    assert ranks[-1] == max(xs)


def test_percentile_of_1_to_n_is_the_rank() -> None:
    n = 1000
    xs = list(range(1, n + 1))
    random.Random(7).shuffle(xs)
    for p in (50, 95, 99, 99.9):
        assert percentile(xs, p) == math.ceil(p * n / 100)


@pytest.mark.parametrize("p", [0, -1, 100.5])
def test_percentile_rejects_bad_p(p: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], p)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summarize_counts_each_kind_of_error_separately() -> None:
    allowed = [TapResult("lock-101", float(ms), "allow", "ok") for ms in range(1, 101)]
    results = [
        *allowed,
        TapResult("lock-102", 5.0, "deny", "credential_lost"),
        TapResult("lock-102", 6.0, "deny", "credential_lost"),
        TapResult("lock-103", 10_000.0, error="internal"),  # must not count as a latency
        TapResult("lock-103", error=TIMEOUT),
        TapResult("lock-104", error=TIMEOUT),
        TapResult("lock-104", error=TIMEOUT),
    ]
    random.Random(1).shuffle(results)
    report = summarize(results, requested_rate=50, duration_s=2, devices=4, send_elapsed_s=2.1)

    assert report.sent == len(results) == 106
    assert report.decisions == 102
    assert (report.timeouts, report.hub_errors, report.unexpected_denials) == (3, 1, 2)
    assert report.errors == 6
    assert report.outcomes == {"credential_lost": 2, "ok": 100}
    assert report.hub_error_codes == {"internal": 1}
    assert report.achieved_rate == round(106 / 2.1, 2)
    latencies = [r.latency_ms for r in results if r.outcome is not None and r.latency_ms]
    assert report.latency_ms["max"] == max(latencies) == 100.0
    assert report.latency_ms["p50"] == percentile(latencies, 50)
    assert report.latency_ms["p99"] == percentile(latencies, 99)


def test_summarize_of_a_clean_run_has_no_errors_and_is_json() -> None:
    results = [TapResult("lock-101", 1.5, "allow", "ok") for _ in range(10)]
    report = summarize(results, requested_rate=10, duration_s=1, devices=1, send_elapsed_s=1)
    assert report.errors == 0
    assert json.loads(json.dumps(asdict(report)))["latency_ms"]["p95"] == 1.5


def test_summarize_without_decisions_has_no_latency() -> None:
    report = summarize(
        [TapResult("lock-101", error=TIMEOUT)], requested_rate=1, duration_s=1, devices=1,
        send_elapsed_s=1,
    )
    assert report.latency_ms == {"p50": None, "p95": None, "p99": None, "max": None}
    assert report.errors == report.timeouts == 1


# ------------------------------------------------------- the open-loop schedule


class FakeClient:
    """Stands in for DeviceClient.send_tap; answers (or not) on another thread."""

    def __init__(self, reply: str, delay: float = 0.0) -> None:
        self.reply, self.delay = reply, delay
        self.sent: list[tuple[float, Any]] = []

    def send_tap(self, credential: Any, **_: Any) -> tuple[None, Future[Decision]]:
        self.sent.append((time.perf_counter(), credential))
        future: Future[Decision] = Future()
        if self.reply == "allow":
            decision = Decision(event_id="e1", outcome="allow", reason=EntryReason.OK,
                                text="Welcome", decided_at=utcnow())
            threading.Timer(self.delay, future.set_result, [decision]).start()
        elif self.reply == "error":
            error = ErrorMessage(code=ErrorCode.INTERNAL, detail="boom", topic="t")
            threading.Timer(self.delay, future.set_exception, [HubError(error)]).start()
        return None, future


def test_generate_sends_on_schedule_without_waiting_for_replies() -> None:
    silent, answering = FakeClient("none"), FakeClient("allow", delay=0.01)
    targets = [Target("lock-101", "room-101", ("04A10000000001", "04A10000000011")),
               Target("lock-102", "room-102", ("04A10000000002",))]
    started = time.perf_counter()
    results, elapsed, _lag = generate(
        list(zip([silent, answering], targets, strict=True)),
        rate=200, duration=0.25, timeout=0.2,
    )
    took = time.perf_counter() - started

    assert len(results) == 50
    # Round robin over the clients, and over each lock's wristbands.
    assert len(silent.sent) == len(answering.sent) == 25
    assert [c.uid for _, c in silent.sent[:3]] == ["04A10000000001", "04A10000000011",
                                                    "04A10000000001"]
    assert all(isinstance(c, WristbandCredential) for _, c in answering.sent)
    # Open loop: a client that never answers does not slow the schedule down.
    first, last = silent.sent[0][0], silent.sent[-1][0]
    assert 0.2 <= last - first < 0.35
    assert 0.25 <= elapsed < 0.4
    assert took < 0.25 + 0.2 + 0.3  # sending phase + timeout + slack
    by_device = {d: [r for r in results if r.device_id == d] for d in ("lock-101", "lock-102")}
    assert all(r.error == TIMEOUT for r in by_device["lock-101"])
    assert all(r.outcome == "allow" and r.latency_ms is not None and r.latency_ms >= 10
               for r in by_device["lock-102"])


def test_generate_reports_hub_errors_by_code() -> None:
    client = FakeClient("error")
    results, _, _ = generate(
        [(client, Target("lock-101", "room-101", ("04A10000000001",)))],
        rate=100, duration=0.05, timeout=0.5,
    )
    assert len(results) == 5
    assert {r.error for r in results} == {"internal"}
