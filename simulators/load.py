"""An open-loop tap generator: steady taps at door locks, latency measured per tap.

Open loop means taps leave on a fixed schedule whatever the hub does, so a slow
hub shows up as latency and timeouts instead of quietly lowering the rate. Only
taps expected to be allowed are sent (guests at the locks of their own rooms),
so every denial is an error.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import cycle
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from devices.client import DeviceClient, HubError, NoEcho, broker_round_trips
from devices.contract import Decision, WristbandCredential, utcnow
from simulators.readers import Broker, Wristband, connect_device
from simulators.rest import HubApi

TIMEOUT = "timeout"


class TapSender(Protocol):
    """What the generator needs of a device: DeviceClient.send_tap."""

    def send_tap(self, credential: WristbandCredential) -> tuple[object, Future[Decision]]: ...


@dataclass(frozen=True, slots=True)
class Target:
    """A door lock and the active wristbands of the guests staying in its room."""

    device_id: str
    zone_id: str
    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TapResult:
    """What became of one tap: a decision, a hub error code, or ``timeout``."""

    device_id: str
    latency_ms: float | None = None
    outcome: str | None = None
    reason: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class LoadReport:
    """The numbers of one load run (``dataclasses.asdict`` gives the JSON form)."""

    requested_rate: float
    duration_s: float
    devices: int
    sent: int
    decisions: int
    errors: int
    timeouts: int
    hub_errors: int
    unexpected_denials: int
    achieved_rate: float
    latency_ms: dict[str, float | None]
    max_send_lag_ms: float
    outcomes: dict[str, int] = field(default_factory=dict)
    hub_error_codes: dict[str, int] = field(default_factory=dict)
    # A bare publish -> receive through the same broker, measured in the same run, and the
    # tap's p50 as a multiple of it: comparable across machines where raw ms are not.
    baseline_p50_ms: float | None = None
    p50_vs_baseline: float | None = None
    baseline_skipped: str | None = None  # why there is no baseline, when there is none


# ----------------------------------------------------------------- the report


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile: the smallest value with >= p% of values <= it."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {p}")
    ordered = sorted(values)
    rank = -(-p * len(ordered) // 100)  # ceil without float rounding surprises for integer p
    return ordered[max(int(rank), 1) - 1]


def summarize(
    results: Sequence[TapResult], *, requested_rate: float, duration_s: float, devices: int,
    send_elapsed_s: float, max_send_lag_ms: float = 0.0,
) -> LoadReport:
    """Count, classify and take percentiles of a run's tap results."""
    decisions = [r for r in results if r.outcome is not None]
    latencies = [r.latency_ms for r in decisions if r.latency_ms is not None]
    timeouts = sum(1 for r in results if r.error == TIMEOUT)
    hub_errors = Counter(r.error for r in results if r.error is not None and r.error != TIMEOUT)
    denials = sum(1 for r in decisions if r.outcome != "allow")
    if latencies:
        latency: dict[str, float | None] = {
            "p50": round(percentile(latencies, 50), 3),
            "p95": round(percentile(latencies, 95), 3),
            "p99": round(percentile(latencies, 99), 3),
            "max": round(max(latencies), 3),
        }
    else:
        latency = {"p50": None, "p95": None, "p99": None, "max": None}
    n_hub_errors = sum(hub_errors.values())
    return LoadReport(
        requested_rate=requested_rate,
        duration_s=duration_s,
        devices=devices,
        sent=len(results),
        decisions=len(decisions),
        errors=timeouts + n_hub_errors + denials,
        timeouts=timeouts,
        hub_errors=n_hub_errors,
        unexpected_denials=denials,
        achieved_rate=round(len(results) / send_elapsed_s, 2) if send_elapsed_s > 0 else 0.0,
        latency_ms=latency,
        max_send_lag_ms=round(max_send_lag_ms, 3),
        outcomes=dict(sorted(Counter(str(r.reason) for r in decisions).items())),
        hub_error_codes=dict(sorted(hub_errors.items())),
    )


# ------------------------------------------------------------------ discovery


def discover_targets(api: HubApi, venue: str, valid_until: datetime | None = None) -> list[Target]:
    """Door locks of ``venue`` with the active wristbands allowed to open them.

    A room entitlement qualifies when it is active, has no schedule, and stays
    valid until ``valid_until`` (the end of the run), so no tap can be denied.
    """
    now = utcnow()
    until = valid_until or now
    locks = sorted(
        (d for d in api.devices(venue_id=venue, kind="door_lock") if d.enabled and d.zone_id),
        key=lambda d: d.id,
    )
    zones = {d.zone_id for d in locks}
    guests_of: dict[str, set[str]] = {}
    for ent in api.entitlements(kind="room"):
        usable = ent.status == "active" and not ent.schedule
        if not usable or not ent.valid_from <= now < until < ent.valid_until:
            continue
        for zone_id in ent.zone_ids:
            if zone_id in zones:
                guests_of.setdefault(zone_id, set()).add(ent.guest_id)
    bands: dict[str, list[str]] = {}
    for guest_id in sorted({g for guests in guests_of.values() for g in guests}):
        creds = api.credentials(guest_id=guest_id, kind="wristband")
        # Filter kind again: a hub that ignored the query filter must not slip in phone keys.
        bands[guest_id] = [
            # Plain taps only: a secure band's bare UID is (rightly) refused as a clone.
            c.identifier for c in creds
            if c.kind == "wristband" and c.status == "active" and not c.sun
        ]
    targets = []
    for lock in locks:
        assert lock.zone_id is not None
        uids = sorted({uid for g in guests_of.get(lock.zone_id, ()) for uid in bands[g]})
        if uids:
            targets.append(Target(lock.id, lock.zone_id, tuple(uids)))
    return targets


# ------------------------------------------------------------------ the run


class _Tracker:
    """Collects tap results from the clients' network threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: list[TapResult | None] = []
        self._devices: list[str] = []
        self.futures: list[Future[Decision]] = []

    def watch(self, device_id: str, future: Future[Decision], sent_at: float) -> None:
        with self._lock:
            index = len(self._results)
            self._results.append(None)
            self._devices.append(device_id)
            self.futures.append(future)

        def done(fut: Future[Decision]) -> None:
            ms = (time.perf_counter() - sent_at) * 1000
            exc = fut.exception()
            if exc is None:
                d = fut.result()
                result = TapResult(device_id, ms, d.outcome, d.reason.value)
            elif isinstance(exc, HubError):
                result = TapResult(device_id, ms, error=exc.error.code.value)
            else:
                result = TapResult(device_id, ms, error=f"client:{type(exc).__name__}")
            with self._lock:
                self._results[index] = result

        future.add_done_callback(done)

    def close(self) -> list[TapResult]:
        """The results so far; a tap still unanswered is a timeout, whatever comes later."""
        with self._lock:
            return [
                r if r is not None else TapResult(dev, error=TIMEOUT)
                for r, dev in zip(self._results, self._devices, strict=True)
            ]


def paced(rate: float, total: int) -> Iterator[tuple[int, float]]:
    """Open loop: yield ``(k, due)`` for ``total`` sends, ``rate`` a second, each once its
    time has come (never early; late when the caller falls behind, which it measures)."""
    start = time.perf_counter()
    for k in range(total):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield k, due


def generate(
    clients: Sequence[tuple[TapSender, Target]], *, rate: float, duration: float,
    timeout: float,
) -> tuple[list[TapResult], float, float]:
    """Send ``rate`` taps/s round-robin over ``clients`` for ``duration`` s; wait for replies.

    Returns the tap results, the length of the sending phase in seconds and the
    largest lag of a send behind its schedule in ms.
    """
    total = int(rate * duration)
    tracker = _Tracker()
    # Credentials built up front: the send loop should only time and publish.
    bands = [cycle([Wristband(uid).credential for uid in target.uids]) for _, target in clients]
    max_lag = 0.0
    start = time.perf_counter()
    for k, due in paced(rate, total):
        i = k % len(clients)
        client, target = clients[i]
        sent_at = time.perf_counter()
        max_lag = max(max_lag, sent_at - due)
        _, future = client.send_tap(next(bands[i]))
        tracker.watch(target.device_id, future, sent_at)
    # The sending phase lasts the full duration, so the achieved rate is comparable.
    rest = start + duration - time.perf_counter()
    if rest > 0:
        time.sleep(rest)
    send_elapsed = time.perf_counter() - start
    wait_futures(tracker.futures, timeout=timeout)
    return tracker.close(), send_elapsed, max_lag * 1000


def run_load(
    api: HubApi, venue: str, broker: Broker, *, rate: float, duration: float, devices: int,
    timeout: float, log: Console | None = None,
) -> LoadReport:
    """Discover targets, connect one client per lock, generate, and report.

    LookupError when the venue has no lock a guest may open; OSError when the
    broker is unreachable; the REST client's errors when the API is.
    """
    margin = timedelta(seconds=duration + timeout + 60)
    targets = discover_targets(api, venue, valid_until=utcnow() + margin)[:devices]
    if not targets:
        raise LookupError(f"no door lock in venue {venue!r} with an active guest wristband to tap")
    if log is not None:
        n_bands = sum(len(t.uids) for t in targets)
        log.print(
            f"{len(targets)} locks, {n_bands} wristbands; {int(rate * duration)} taps "
            f"at {rate:g}/s for {duration:g}s"
        )
    baseline, skipped = _baseline(broker, log)
    clients: list[tuple[DeviceClient, Target]] = []
    try:
        for target in targets:
            clients.append((connect_device(venue, target.device_id, broker), target))
        results, elapsed, lag = generate(clients, rate=rate, duration=duration, timeout=timeout)
    finally:
        for client, _ in clients:
            client.close()
    report = summarize(
        results, requested_rate=rate, duration_s=duration, devices=len(clients),
        send_elapsed_s=elapsed, max_send_lag_ms=lag,
    )
    p50 = report.latency_ms["p50"]
    return replace(report, baseline_p50_ms=None if baseline is None else round(baseline, 3),
                   p50_vs_baseline=round(p50 / baseline, 2) if p50 and baseline else None,
                   baseline_skipped=skipped)


def _baseline(broker: Broker, log: Console | None) -> tuple[float | None, str | None]:
    """The broker-only round trip's p50 in ms, or None and why it was skipped (told on
    ``log`` when it was tried and failed)."""
    # It needs a client that may publish and read back its own topic: on a closed broker
    # only an open login (from the URL) may; devices may not.
    if broker.logins and broker.username is None:
        return None, "a closed broker lets no device read back its own topic"
    try:
        return percentile(broker_round_trips(
            broker.host, broker.port, 200, username=broker.username, password=broker.password,
            tls_ca=broker.tls_ca), 50), None
    except NoEcho as exc:  # the taps may still go through: measure them all the same
        if log is not None:
            log.print(f"[yellow]broker-only baseline skipped:[/] {escape(str(exc))}",
                      soft_wrap=True)
        return None, str(exc)


def render_report(report: LoadReport, console: Console) -> None:
    """Print a load report as a table."""
    table = Table(title="load", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    lat = " / ".join(
        "-" if (v := report.latency_ms[k]) is None else f"{v:.1f}"
        for k in ("p50", "p95", "p99", "max")
    )
    rows = [
        ("devices", str(report.devices)),
        ("sent", str(report.sent)),
        ("decisions", str(report.decisions)),
        ("rate (requested / achieved)", f"{report.requested_rate:g} / {report.achieved_rate:g} /s"),
        ("max send lag", f"{report.max_send_lag_ms:.1f} ms"),
        ("latency p50 / p95 / p99 / max", f"{lat} ms"),
        ("broker-only round trip p50", (
            "skipped" if report.baseline_skipped else "-") if report.baseline_p50_ms is None
         else f"{report.baseline_p50_ms:.2f} ms (tap p50 = {report.p50_vs_baseline}x)"),
        ("timeouts", str(report.timeouts)),
        ("hub errors", str(report.hub_errors)),
        ("unexpected denials", str(report.unexpected_denials)),
    ]
    rows += [(f"outcome {reason}", str(n)) for reason, n in report.outcomes.items()]
    rows += [(f"hub error {code}", str(n)) for code, n in report.hub_error_codes.items()]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    style = "bold red" if report.errors else "bold green"
    console.print(f"[{style}]{report.errors} errors[/] in {report.sent} taps")
