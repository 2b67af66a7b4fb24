"""The bench's arithmetic: a phase's figures from its send and reply times, the search for
the highest rate with zero errors, and the hub-to-echo ratios.

Pure: no broker, no clock. Times are ``time.perf_counter`` seconds taken by the fleet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from simulators.load import percentile

TOO_LATE = "too_late"  # the hub's decision reason for a tap that waited past its deadline
# A paced rate is kept up with when the answers came at >= 95% of it (over the span from
# the first send to the last answer): a responder that falls ever further behind but
# answers within the timeout has no errors, yet does not sustain the rate.
PACE = 0.95
ERROR_PREFIX = "error:"  # a reply on the errors topic, recorded as error:<code>


@dataclass(frozen=True, slots=True)
class Reply:
    """The first reply to one message: when it arrived and what it said."""

    at: float
    reason: str  # a decision's reason, ``error:<code>``, or ``echo``


@dataclass(frozen=True, slots=True)
class PhaseRecord:
    """What one phase sent and got back, as the fleet saw it."""

    phase: str  # sequential, paced, search or burst
    sent: dict[str, float]  # event id -> when it was published
    replies: dict[str, Reply]  # event id -> its first reply (any time, late ones included)
    timeout: float  # a reply later than this after its message is a loss
    send_elapsed: float  # seconds of the sending window
    rate: float | None = None
    seconds: float | None = None
    max_lag_ms: float = 0.0
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """The figures of one phase against one responder."""

    phase: str
    rate: float | None
    seconds: float | None
    sent: int
    answered: int  # replied within the timeout (a decision of any kind, or an error reply)
    lost: int  # no reply within the timeout: sent - answered
    late: int  # of the lost, those answered after the timeout after all
    too_late: int
    error_replies: int
    duplicates: int
    answered_per_s: float
    send_rate: float
    max_send_lag_ms: float
    latency_ms: dict[str, float | None]
    all_answered_s: float | None  # first send to last reply, when every message was answered
    outcomes: dict[str, int] = field(default_factory=dict)
    late_outcomes: dict[str, int] = field(default_factory=dict)  # what the late replies said

    @property
    def errors(self) -> int:
        """Losses, too_late decisions and error replies: what "zero errors" counts."""
        return self.lost + self.too_late + self.error_replies

    @property
    def zero_errors(self) -> bool:
        return self.sent > 0 and self.errors == 0

    @property
    def kept_pace(self) -> bool:
        """Answered at (nearly) the rate sent; always, for a phase without a rate."""
        return self.rate is None or self.answered_per_s >= PACE * self.rate

    @property
    def sustained(self) -> bool:
        """Zero errors, and kept pace: what the search for the highest rate asks of a run."""
        return self.zero_errors and self.kept_pace


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """p50, p95, p99 and max in ms, rounded to the microsecond; None without samples."""
    if not latencies_ms:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    return {
        "p50": round(percentile(latencies_ms, 50), 3),
        "p95": round(percentile(latencies_ms, 95), 3),
        "p99": round(percentile(latencies_ms, 99), 3),
        "max": round(max(latencies_ms), 3),
    }


def summarize(record: PhaseRecord) -> PhaseResult:
    """Count, classify and take percentiles of one phase."""
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    late: Counter[str] = Counter()
    last_reply: float | None = None
    for event_id, sent_at in record.sent.items():
        reply = record.replies.get(event_id)
        if reply is None:
            continue
        waited = reply.at - sent_at
        if waited > record.timeout:
            late[reply.reason] += 1
            continue
        latencies.append(waited * 1000)
        outcomes[reply.reason] += 1
        last_reply = reply.at if last_reply is None else max(last_reply, reply.at)
    sent, answered = len(record.sent), len(latencies)
    first_sent = min(record.sent.values(), default=0.0)
    span = max(record.send_elapsed, (last_reply - first_sent) if last_reply is not None else 0.0)
    return PhaseResult(
        phase=record.phase,
        rate=record.rate,
        seconds=record.seconds,
        sent=sent,
        answered=answered,
        lost=sent - answered,
        late=late.total(),
        too_late=outcomes[TOO_LATE],
        error_replies=sum(n for reason, n in outcomes.items() if reason.startswith(ERROR_PREFIX)),
        duplicates=record.duplicates,
        answered_per_s=round(answered / span, 1) if span > 0 else 0.0,
        send_rate=round(sent / record.send_elapsed, 1) if record.send_elapsed > 0 else 0.0,
        max_send_lag_ms=round(record.max_lag_ms, 3),
        latency_ms=latency_summary(latencies),
        all_answered_s=(round(last_reply - first_sent, 3)
                        if last_reply is not None and answered == sent else None),
        outcomes=dict(sorted(outcomes.items())),
        late_outcomes=dict(sorted(late.items())),
    )


# ------------------------------------------------------------ the highest sustained rate


def search_bounds(paced: Sequence[PhaseResult]) -> tuple[float, float | None]:
    """(last good, first bad) among paced runs: the lowest rate not sustained, and the
    highest rate below it that was; (highest rate, None) when every rate was sustained.
    0 when none was.
    """
    runs = sorted((r.rate, r.sustained) for r in paced if r.rate is not None)
    first_bad = next((rate for rate, ok in runs if not ok), None)
    below = [rate for rate, ok in runs if ok and (first_bad is None or rate < first_bad)]
    return (max(below) if below else 0.0), first_bad


def bisect_rate(good: float, bad: float | None, steps: int,
                probe: Callable[[float], bool]) -> tuple[float, float | None]:
    """Narrow [good, bad) with up to ``steps`` probes at whole rates; the new (good, bad).

    ``probe(rate)`` runs the load at ``rate`` and says whether it was sustained. Without a
    bad rate there is nothing to narrow: the highest rate tried is a lower bound.
    """
    if bad is None:
        return good, None
    for _ in range(steps):
        mid = float(round((good + bad) / 2))
        if not good < mid < bad:
            break  # adjacent whole rates: as narrow as it gets
        if probe(mid):
            good = mid
        else:
            bad = mid
    return good, bad


# -------------------------------------------------------------------- hub vs echo


@dataclass(slots=True)
class Figures:
    """Everything measured of one responder (the echo or the hub) on one broker."""

    sequential: PhaseResult | None = None
    paced: list[PhaseResult] = field(default_factory=list)
    search: list[PhaseResult] = field(default_factory=list)
    max_rate: float | None = None  # highest paced rate sustained (0: none)
    first_bad_rate: float | None = None  # the lowest rate seen not sustained (None: none)
    burst: PhaseResult | None = None


def ratio(hub: float | None, echo: float | None) -> float | None:
    """hub / echo, two decimals; None when either is missing or the echo's is zero."""
    if hub is None or echo is None or echo == 0:
        return None
    return round(hub / echo, 2)


def ratios(echo: Figures, hub: Figures) -> dict[str, object]:
    """The hub's figures as multiples of the echo's, measured on the same broker and load.

    ``throughput`` is below 1 when the hub sustains less than the echo; the latency
    ratios are above 1 by what the hub adds to a bare round trip.
    """
    def p50(result: PhaseResult | None) -> float | None:
        return None if result is None else result.latency_ms["p50"]

    echo_paced = {r.rate: r for r in echo.paced}
    by_rate = {
        f"{r.rate:g}": ratio(p50(r), p50(echo_paced.get(r.rate)))
        for r in hub.paced if r.rate in echo_paced
    }
    return {
        "throughput": ratio(hub.max_rate, echo.max_rate),
        # A rate the echo never failed at is a lower bound, and so the ratio an upper one.
        "throughput_bounded_by_echo": echo.first_bad_rate is None,
        "sequential_p50": ratio(p50(hub.sequential), p50(echo.sequential)),
        "p50_by_rate": by_rate,
        "burst_all_answered": ratio(
            hub.burst.all_answered_s if hub.burst else None,
            echo.burst.all_answered_s if echo.burst else None),
    }
