"""What ``hub-sim room`` and ``hub-sim watch`` parse and print.

The appliances themselves are :mod:`simulators.appliances`; this module reads what a user
types (a watch's guest number, heart rates, a workout) and turns the appliances'
:class:`~simulators.appliances.Note` into one line of text each.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from devices.topics import valid_id
from simulators.appliances import MAX_SOURCE, Note, Reading

MIN_BPM, MAX_BPM = 20, 250
MAX_WORKOUT_MIN = 1440


def watch_device_id(text: str) -> str:
    """``3`` (a guest's number) or ``guest-03`` -> ``watch-guest-03``; any other text is
    taken as the watch's device id. ValueError when it cannot be one."""
    value = text.strip()
    if value.isdecimal() and value.isascii():
        number = int(value)
        if number < 1:
            raise ValueError(f"a guest's number starts at 1, not {text!r}")
        return f"watch-guest-{number:02d}"
    if value.startswith("guest-") and value[6:].isdecimal() and value[6:].isascii():
        return f"watch-{value}"
    if not valid_id(value):
        raise ValueError(f"{text!r} is neither a guest's number nor a device id")
    return value


def parse_bpms(values: Iterable[str]) -> list[int]:
    """Heart rates from ``72,130,140`` (each value may list several); ValueError if one is
    not a whole number of MIN_BPM..MAX_BPM."""
    bpms: list[int] = []
    for value in values:
        for part in value.split(","):
            text = part.strip()
            if not (text.isdecimal() and text.isascii()):
                raise ValueError(f"a heart rate is a whole number of bpm, not {part.strip()!r}")
            bpm = int(text)
            if not MIN_BPM <= bpm <= MAX_BPM:
                raise ValueError(f"heart rate {bpm} is outside {MIN_BPM}..{MAX_BPM} bpm")
            bpms.append(bpm)
    return bpms


def parse_workout(text: str) -> tuple[str, int]:
    """``run:30`` -> (``"run"``, 30); ValueError unless KIND:MINUTES with 1..1440 minutes."""
    kind, sep, minutes = text.rpartition(":")
    kind, minutes = kind.strip(), minutes.strip()
    if not sep or not kind:
        raise ValueError(f"a workout is KIND:MINUTES (e.g. run:30), not {text!r}")
    if len(kind) > MAX_SOURCE:
        raise ValueError(f"a workout kind is at most {MAX_SOURCE} characters")
    if not (minutes.isdecimal() and minutes.isascii()):
        raise ValueError(f"a workout's minutes are a whole number, not {minutes!r}")
    if not 1 <= int(minutes) <= MAX_WORKOUT_MIN:
        raise ValueError(f"a workout lasts 1..{MAX_WORKOUT_MIN} minutes, not {int(minutes)}")
    return kind, int(minutes)


# ------------------------------------------------------------------ printing


def clock(at: datetime) -> str:
    """``at`` in this machine's local time, to the millisecond."""
    return at.astimezone().strftime("%H:%M:%S.%f")[:-3]


def _value(value: Reading | None) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def readings(values: dict[str, Reading] | Iterable[tuple[str, Reading]]) -> str:
    """``setpoint_c=21.0 mode="auto"``."""
    pairs = values.items() if isinstance(values, dict) else values
    return " ".join(f"{name}={_value(value)}" for name, value in pairs)


def describe(note: Note) -> str:
    """What the note says, in one line (without time and device)."""
    if note.what == "changed":
        return "now " + ", ".join(
            f"{name}={_value(after)}" if before is None
            else f"{name} {_value(before)} -> {_value(after)}"
            for name, before, after in note.changes)
    assert note.command is not None
    command = note.command
    if note.what == "rejected":
        return f"rejected {command.name} ({readings(command.params)}): {note.why}"
    if command.name == "vibrate":
        return (f"vibrated level {command.params.get('level')}: "
                f"{command.params.get('reason')}")
    return f"obeyed {command.name} {readings(command.params)}".rstrip()


class Notes:
    """The appliances' notes, queued by their threads, printed by the main thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Note] = queue.SimpleQueue()
        self.obeyed = self.rejected = 0

    def put(self, note: Note) -> None:
        """A listener for :meth:`Appliance.listen`: never blocks."""
        self._queue.put(note)

    def show_until(self, deadline: float | None, show: Callable[[Note], None]) -> None:
        """Show notes as they come until ``deadline`` (``time.monotonic``; None: forever)."""
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            try:
                # Wake at least once a second: a blocked get would delay Ctrl-C on some systems.
                note = self._queue.get(timeout=1.0 if left is None else min(left, 1.0))
            except queue.Empty:
                continue
            self._count(note)
            show(note)

    def show_pending(self, show: Callable[[Note], None]) -> None:
        """Show the notes already queued."""
        while True:
            try:
                note = self._queue.get_nowait()
            except queue.Empty:
                return
            self._count(note)
            show(note)

    def _count(self, note: Note) -> None:
        if note.what == "obeyed":
            self.obeyed += 1
        elif note.what == "rejected":
            self.rejected += 1
