"""How long a log-in must wait after failures in a row: pure, no I/O.

Counted per client address and per account from that address. The first few wrong
passwords cost nothing but argon2's time; from the fifth in a row, each further attempt
waits twice as long as the last, up to a quarter of an hour. A right password clears
its account's count from that address (not the address's: logging in to one's own
account must not reset a guessing run at others). Nobody can lock an account out from
another address, and a count an hour old is forgotten.
"""

from __future__ import annotations

from datetime import datetime, timedelta

FREE_FAILURES = 4  # wrong passwords in a row before any wait
LONGEST_WAIT = timedelta(minutes=15)
FORGET_AFTER = timedelta(hours=1)  # a run of failures this old starts again


def throttle_keys(username: str, address: str) -> tuple[str, str]:
    """(the address's key, the account-from-this-address key)."""
    return f"addr:{address}", f"user:{username.lower()}@{address}"


def wait_after(failures: int) -> timedelta:
    """The wait before the next attempt after ``failures`` wrong passwords in a row."""
    if failures <= FREE_FAILURES:
        return timedelta(0)
    return min(LONGEST_WAIT, timedelta(seconds=2 ** min(failures - FREE_FAILURES - 1, 20)))


def retry_after(failures: int, last_failure_at: datetime | None, now: datetime) -> float:
    """Seconds until the next attempt may be tried (0: now)."""
    if last_failure_at is None or now - last_failure_at > FORGET_AFTER:
        return 0.0
    return max(0.0, (last_failure_at + wait_after(failures) - now).total_seconds())
