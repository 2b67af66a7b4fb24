"""How long a log-in must wait after failures in a row: pure, no I/O.

The first few wrong passwords cost nothing but argon2's time; from the fifth in a row on
an account or from one address, each further attempt waits twice as long as the last,
up to a quarter of an hour. A right password clears the account's count (and the
address's): a guessing run cannot lock its victim out for longer than that.
"""

from __future__ import annotations

from datetime import datetime, timedelta

FREE_FAILURES = 4  # wrong passwords in a row before any wait
LONGEST_WAIT = timedelta(minutes=15)


def wait_after(failures: int) -> timedelta:
    """The wait before the next attempt after ``failures`` wrong passwords in a row."""
    if failures <= FREE_FAILURES:
        return timedelta(0)
    return min(LONGEST_WAIT, timedelta(seconds=2 ** min(failures - FREE_FAILURES - 1, 20)))


def retry_after(failures: int, last_failure_at: datetime | None, now: datetime) -> float:
    """Seconds until the next attempt may be tried (0: now)."""
    if last_failure_at is None:
        return 0.0
    return max(0.0, (last_failure_at + wait_after(failures) - now).total_seconds())
