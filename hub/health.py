"""Whether taps are being decided: by this process's bridge, or by the fleet's workers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from hub.models import WorkerBeat

# A worker writes its beat this often; one not heard from for three beats is gone.
BEAT_EVERY = timedelta(seconds=5)
SILENT_AFTER = 3 * BEAT_EVERY
GONE_AFTER = timedelta(days=1)  # no longer listed


def live(beat: WorkerBeat, now: datetime) -> bool:
    """Heard from lately: what it last said still holds."""
    return now - beat.seen_at <= SILENT_AFTER


def bridge_problems(snap: dict[str, Any], deadline_ms: int) -> list[str]:
    """Why this bridge is not deciding taps (none: it is)."""
    problems = []
    if not snap.get("connected"):
        problems.append("the bridge is not connected to the broker")
    if snap.get("worker_alive") is False:
        problems.append("the bridge worker is not running")
    oldest = snap.get("oldest_waiting_ms")
    if oldest is not None and oldest > deadline_ms:
        problems.append(f"the oldest waiting message is {oldest:.0f} ms old, past the tap "
                        f"deadline of {deadline_ms} ms")
    return problems


def fleet_problems(beats: Sequence[WorkerBeat], now: datetime) -> list[str]:
    """Why the fleet is not deciding taps: no worker heard from lately says it is."""
    heard = [b for b in beats if live(b, now)]
    if any(b.deciding for b in heard):
        return []
    if not heard:
        return [f"no worker has reported in the last {SILENT_AFTER.total_seconds():.0f} s"]
    # Not the host: /health is public (the row keeps it, for whoever reads the database).
    return [f"worker {b.name}: {b.problems or 'not deciding'}" for b in heard]
