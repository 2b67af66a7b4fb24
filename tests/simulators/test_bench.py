"""hub-sim bench: its pure parts (figures, the search, ratios, the traffic mix), and one
real run per broker that must start, measure and stop everything it started."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from devices.contract import PaymentRequest, TapEvent, parse_event
from simulators.bench import parse_rates
from simulators.bench_mix import (
    UNKNOWN_SHARE,
    BenchDevice,
    Mix,
    Pools,
    Traffic,
    allocate,
    payload,
)
from simulators.bench_procs import find_mosquitto
from simulators.bench_stats import (
    Figures,
    PhaseRecord,
    PhaseResult,
    Reply,
    bisect_rate,
    ratios,
    search_bounds,
    summarize,
)
from simulators.echo import reply_for
from tests.conftest import fresh_postgres, missing

BIN = Path(sys.executable).parent


# ------------------------------------------------------------------ figures


def record(replies: dict[str, tuple[float, str]], sent: dict[str, float],
           **kw: Any) -> PhaseRecord:
    values: dict[str, Any] = {"timeout": 1.0, "send_elapsed": 1.0}
    values.update(kw)
    return PhaseRecord(phase="paced", sent=sent,
                       replies={e: Reply(at, why) for e, (at, why) in replies.items()}, **values)


def test_a_phase_counts_answers_losses_late_replies_and_errors() -> None:
    sent = {f"e{i}": float(i) for i in range(10)}
    replies = {f"e{i}": (i + 0.010 * (i + 1), "ok") for i in range(6)}
    replies["e6"] = (6 + 0.5, "too_late")
    replies["e7"] = (7 + 0.2, "error:unknown_device")
    replies["e8"] = (8 + 3.0, "ok")  # after the 1 s timeout: lost, and late
    result = summarize(record(replies, sent, duplicates=2))
    assert (result.sent, result.answered, result.lost, result.late) == (10, 8, 2, 1)
    assert result.answered + result.lost == result.sent
    assert (result.too_late, result.error_replies, result.duplicates) == (1, 1, 2)
    assert result.errors == 4 and not result.zero_errors
    assert result.latency_ms["p50"] == 40.0  # nearest rank of 10, 20, ..., 60, 200, 500 ms
    assert result.latency_ms["max"] == 500.0
    assert result.all_answered_s is None  # not all were answered
    assert result.outcomes == {"error:unknown_device": 1, "ok": 6, "too_late": 1}
    assert result.late_outcomes == {"ok": 1}


def test_a_phase_fully_answered_says_when_the_last_reply_came() -> None:
    sent = {"a": 10.0, "b": 10.5}
    result = summarize(record({"a": (10.1, "echo"), "b": (12.0, "echo")}, sent, timeout=5.0,
                              send_elapsed=0.5))
    assert result.zero_errors and result.all_answered_s == 2.0
    assert result.answered_per_s == 1.0  # 2 answers over the 2 s from first send to last reply


def test_a_phase_without_replies_has_no_percentiles() -> None:
    result = summarize(record({}, {"a": 1.0}))
    assert result.lost == 1 and result.latency_ms == {"p50": None, "p95": None, "p99": None,
                                                      "max": None}


# ------------------------------------------------------------------ the search


def phase(rate: float, ok: bool, pace: float = 1.0) -> PhaseResult:
    return PhaseResult(phase="paced", rate=rate, seconds=1.0, sent=10, answered=10 if ok else 9,
                       lost=0 if ok else 1, late=0, too_late=0, error_replies=0, duplicates=0,
                       answered_per_s=rate * pace, send_rate=rate, max_send_lag_ms=0.0,
                       latency_ms={"p50": 1.0}, all_answered_s=None)


def test_a_rate_is_sustained_with_zero_errors_at_the_pace_sent() -> None:
    assert phase(500, True).sustained
    assert phase(500, True, pace=0.96).sustained
    slow = phase(500, True, pace=0.8)  # every answer in time, but ever further behind
    assert slow.zero_errors and not slow.kept_pace and not slow.sustained
    assert not phase(500, False).sustained


@pytest.mark.parametrize(("runs", "bounds"), [
    ([(200, True), (500, True), (1000, False), (2000, False)], (500, 1000)),
    ([(200, True), (500, True)], (500, None)),
    ([(200, False), (500, False)], (0, 200)),
    ([(500, True), (200, False), (1000, True)], (0, 200)),  # above a failure does not count
])
def test_the_search_starts_between_the_last_good_and_the_first_bad_rate(
        runs: list[tuple[float, bool]], bounds: tuple[float, float | None]) -> None:
    assert search_bounds([phase(rate, ok) for rate, ok in runs]) == bounds


def test_bisection_closes_in_on_the_capacity() -> None:
    probed: list[float] = []

    def probe(rate: float) -> bool:
        probed.append(rate)
        return rate <= 730

    assert bisect_rate(500, 1000, 3, probe) == (688.0, 750.0)
    assert probed == [750.0, 625.0, 688.0]
    assert bisect_rate(500, 1000, 0, probe) == (500, 1000)
    assert bisect_rate(2000, None, 3, probe) == (2000, None)  # nothing failed: a lower bound
    assert bisect_rate(500, 501, 3, probe) == (500, 501)  # as narrow as whole rates get


def test_ratios_are_the_hub_over_the_echo() -> None:
    echo, hub = Figures(), Figures()
    echo.sequential, hub.sequential = phase(1, True), phase(1, True)
    echo.paced = [phase(200, True), phase(500, True)]
    hub.paced = [phase(200, True), phase(500, False)]
    echo.max_rate, echo.first_bad_rate = 2000.0, None
    hub.max_rate, hub.first_bad_rate = 500.0, 1000.0
    got = ratios(echo, hub)
    assert got["throughput"] == 0.25 and got["throughput_bounded_by_echo"] is True
    assert got["sequential_p50"] == 1.0
    assert got["p50_by_rate"] == {"200": 1.0, "500": 1.0}
    assert got["burst_all_answered"] is None
    assert ratios(Figures(), Figures())["throughput"] is None


def test_rates_are_parsed_sorted_and_positive() -> None:
    assert parse_rates("500, 200,1000") == (200.0, 500.0, 1000.0)
    for bad in ("", "0", "a,b", "-5"):
        with pytest.raises(ValueError):
            parse_rates(bad)


# ------------------------------------------------------------------ the mix


def test_devices_are_allocated_by_role() -> None:
    fifty = Counter(allocate(50, "realistic"))
    assert fifty == {"park_in": 13, "park_out": 12, "ride": 5, "lock": 10, "pos": 10}
    assert Counter(allocate(10, "realistic")) == {"park_in": 3, "park_out": 2, "ride": 1,
                                                  "lock": 2, "pos": 2}
    assert allocate(1, "realistic") == ["park_in"]
    assert all(len(allocate(n, "realistic")) == n for n in range(1, 120))
    assert set(allocate(7, "locks")) == {"lock"}
    with pytest.raises(ValueError):
        allocate(0, "realistic")


DEVICES = (
    BenchDevice("gate-in", "park_in", zone_id="park", direction="in"),
    BenchDevice("gate-out", "park_out", zone_id="park", direction="out"),
    BenchDevice("ride", "ride", zone_id="coaster"),
    BenchDevice("lock-101", "lock", zone_id="room-101"),
    BenchDevice("pos", "pos", merchant_id="cafe"),
)
POOLS = Pools(
    park=tuple(f"04A1{n:010d}" for n in range(1, 11)),
    rides={"coaster": ("04A10000000001", "04A10000000002")},
    rooms={"room-101": ("04A10000000001", "04A10000000011")},
    payers=("04A10000000003",), lost=("04A10000000020",),
    pin_band="04A10000000001", pin="1234", pin_amount=6500,
)


def test_the_mix_is_the_same_for_the_same_seed_and_covers_every_kind() -> None:
    first, second = Mix(DEVICES, POOLS, mix="realistic", seed=7), Mix(
        DEVICES, POOLS, mix="realistic", seed=7)
    seq = [first.next() for _ in range(5000)]
    assert seq == [second.next() for _ in range(5000)]
    assert [i for i, _ in seq[:10]] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]  # round-robin
    kinds = first.sent
    assert set(kinds) == {"park_in", "park_out", "ride", "lock", "pay", "pay_pin", "unknown",
                          "lost"}
    assert abs(kinds["unknown"] / 5000 - UNKNOWN_SHARE) < 0.02
    for index, spec in seq:
        device = DEVICES[index]
        assert spec.payment == (device.role == "pos")
        if spec.what == "lock":
            assert spec.uid in POOLS.rooms["room-101"]
        if spec.what == "pay_pin":
            assert (spec.uid, spec.pin, spec.amount) == ("04A10000000001", "1234", 6500)


def test_out_gates_see_the_guests_the_in_gates_let_in() -> None:
    mix = Mix(DEVICES[:2], POOLS, mix="locks", seed=1)  # no strays in this mix
    inside: set[str] = set()
    for _ in range(200):
        _, spec = mix.next()
        if spec.what == "park_in":
            assert spec.uid not in inside
            inside.add(spec.uid)
        else:
            assert spec.uid in inside
            inside.remove(spec.uid)


def test_payloads_are_contract_messages_stamped_at_send_time() -> None:
    mix = Mix(DEVICES, POOLS, mix="realistic", seed=3)
    for _ in range(200):
        _, spec = mix.next()
        event = parse_event(payload(spec, "ev-1"))
        assert event.event_id == "ev-1"
        if spec.payment:
            assert isinstance(event, PaymentRequest)
            assert (event.amount, event.merchant_id, event.pin) == (spec.amount, "cafe",
                                                                     spec.pin)
        else:
            assert isinstance(event, TapEvent) and event.direction == spec.direction


def test_the_echo_and_the_hub_get_the_same_schedule_and_sizes() -> None:
    echo = Traffic(Mix(DEVICES, POOLS, mix="realistic", seed=5), tag="e12345")
    hub = Traffic(Mix(DEVICES, POOLS, mix="realistic", seed=5), tag="h12345")
    for _ in range(300):
        (ei, eid, ep), (hi, hid, hp) = echo.next(), hub.next()
        assert ei == hi and len(eid) == len(hid)
        assert abs(len(ep) - len(hp)) <= 12  # only ids, keys and timestamps differ


def test_the_echo_answers_with_the_event_id() -> None:
    assert reply_for("bench/echo/gate-1/events", b'{"event_id": "x1", "kind": "tap"}') == (
        "bench/echo/gate-1/replies", b'{"event_id": "x1"}')
    assert reply_for("bench/echo/gate-1/events", b"not json") is None
    assert reply_for("bench/echo/gate-1/other", b"{}") is None


# ------------------------------------------------------------------ the real thing


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("kind", ["embedded", pytest.param("mosquitto",
                                                           marks=pytest.mark.mosquitto)])
def test_bench_measures_echo_and_hub_and_leaves_nothing_running(kind: str,
                                                                tmp_path: Path) -> None:
    if kind == "mosquitto" and find_mosquitto() is None:
        missing("mosquitto")
    out = tmp_path / "bench.json"
    with contextlib.ExitStack() as held:
        # The MQTT TLS port a hub takes by default is held (as another hub on the machine
        # would): the hub the bench starts must not need it.
        tls_default = held.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # held by someone already: as good
            tls_default.bind(("127.0.0.1", 8883))
            tls_default.listen()
        done = subprocess.run(
            [str(BIN / "hub-sim"), "bench", "--broker-kind", kind, "--rates", "20", "--seconds",
             "1", "--sequential", "20", "--burst", "200", "--devices", "10", "--search-steps",
             "0", "--json-out", str(out)],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    section = report["brokers"][kind]
    assert section["status"] == "ran", section["note"]
    assert report["machine"]["cpu_count"] and "bench" in report["command"]
    for target in ("echo", "hub"):
        figures = section[target]
        phases = [figures["sequential"], *figures["paced"], *figures["search"], figures["burst"]]
        assert len(phases) == 3
        for ran in phases:
            assert ran["sent"] > 0 and ran["answered"] + ran["lost"] == ran["sent"], ran
        assert figures["burst"]["sent"] == figures["burst"]["answered"] == 200, figures["burst"]
    assert {"throughput", "sequential_p50", "p50_by_rate"} <= set(section["ratios"])
    # Everything it started is stopped: the processes, their ports, their data.
    assert {p["what"] for p in section["processes"]} >= {"hub", "echo"} | (
        {"mosquitto"} if kind == "mosquitto" else set())
    for proc in section["processes"]:
        assert proc["returncode"] is not None and pid_gone(proc["pid"]), proc
        assert all(port_free(port) for port in proc["ports"]), proc
    data_dir = next(p["data_dir"] for p in section["processes"] if p["what"] == "hub")
    assert not Path(data_dir).exists()
    assert subprocess.run(["pgrep", "-f", data_dir], capture_output=True).returncode == 1


@pytest.mark.mosquitto
@pytest.mark.postgres
def test_bench_measures_a_fleet_of_workers_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    """--workers 2: Mosquitto, `hub api` and two `hub worker` processes on a PostgreSQL
    database decide every tap, the report says so, and all of them exit cleanly."""
    if find_mosquitto() is None:
        missing("mosquitto")
    engine = fresh_postgres(postgres_url)
    url = engine.url.render_as_string(hide_password=False)
    out = tmp_path / "bench.json"
    try:
        done = subprocess.run(
            [str(BIN / "hub-sim"), "bench", "--workers", "2", "--database-url", url,
             "--rates", "20", "--seconds", "1", "--sequential", "10", "--burst", "100",
             "--devices", "6", "--search-steps", "0", "--json-out", str(out)],
            capture_output=True, text=True, timeout=180, cwd=tmp_path,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "(2 hub workers + hub api, postgresql" in " ".join(done.stdout.split())
        report = json.loads(out.read_text())
        assert list(report["brokers"]) == ["mosquitto"]  # `both` is Mosquitto for a fleet
        section = report["brokers"]["mosquitto"]
        assert section["status"] == "ran", section["note"]
        assert section["fleet"]["workers"] == 2
        assert section["fleet"]["database"].startswith("postgresql 127.0.0.1:")
        hub = section["hub"]
        for ran in (hub["sequential"], *hub["paced"], hub["burst"]):
            assert ran["sent"] > 0 and ran["answered"] == ran["sent"] and ran["lost"] == 0, ran
        whats = [p["what"] for p in section["processes"]]
        assert sorted(whats) == ["echo", "hub", "hub api", "hub worker w1", "hub worker w2",
                                 "mosquitto"]
        for proc in section["processes"]:  # every one stopped by the bench, cleanly
            assert proc["returncode"] == 0 and pid_gone(proc["pid"]), proc
            assert all(port_free(port) for port in proc["ports"]), proc
        # The workers decided on that database: every tap the hub answered is recorded there.
        answered = sum(r["answered"] for r in (hub["sequential"], *hub["paced"], hub["burst"]))
        with engine.connect() as conn:
            recorded = conn.execute(sa.text("SELECT count(*) FROM event")).scalar_one()
        assert recorded >= answered * 0.9, (recorded, answered)  # `unknown` bands as well
    finally:
        engine.dispose()


def test_a_fleet_needs_a_database_and_mosquitto(tmp_path: Path) -> None:
    for args, says in (
        (["--workers", "2"], "--database-url"),
        (["--workers", "2", "--database-url", "postgresql+psycopg://h/db", "--broker-kind",
          "embedded"], "Mosquitto"),
        (["--database-url", "postgresql+psycopg://h/db"], "--workers"),
    ):
        done = subprocess.run([str(BIN / "hub-sim"), "bench", *args], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)
        assert done.returncode == 2 and says in " ".join(done.stderr.split()), done.stderr
        assert not (tmp_path / "bench-results.json").exists()  # refused before starting
