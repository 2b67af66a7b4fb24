"""When a tap is too late to act on: pure, no I/O.

A reader gives up on an answer after a second or two and shows "please tap again"; a
door that opens minutes later, or a charge that lands after the terminal showed
"failed", is worse than a denial. So a tap whose turn comes after its deadline is
answered ``too_late`` and moves nothing.

Its age counts from when the broker handed it to the hub and, when the device's own
timestamp is plausible, from that too: a tap the broker held while every hub was down
looks fresh to the hub, but its device knows better.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# A device clock further off than this is taken for unset, not for evidence of age.
PLAUSIBLE_CLOCK_ERROR = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Deadline:
    """How long a tap may wait for its decision, and how far device clocks may drift."""

    limit: timedelta
    clock_skew: timedelta = timedelta(seconds=1)

    def too_late(self, *, now: datetime, handed_at: datetime, device_ts: datetime | None) -> bool:
        """True when the tap is older than the limit, by the hub's clock or the device's."""
        if now - handed_at > self.limit:
            return True
        if device_ts is None or abs(handed_at - device_ts) > PLAUSIBLE_CLOCK_ERROR:
            return False
        return now - device_ts > self.limit + self.clock_skew


# No deadline: tools and tests that decide taps outside the bridge.
NEVER = Deadline(limit=timedelta(days=365))
