"""Smart-room appliances that report their state and obey the hub's commands.

Each appliance is one device on the broker (through :class:`devices.client.DeviceClient`):
it listens on its ``hub/{device}/commands`` topic and publishes a
:class:`~devices.contract.TelemetryEvent` on its ``device/{device}/events`` topic at every
change of state. The command names, parameters and readings are the contract the hub's
automations use:

- Thermostat: ``set_temperature`` {celsius: 16..28, source?} -> setpoint_c, temperature_c,
  mode, manual, source
- Light: ``set_scene`` {scene: warm|bright|relax|off, source?} -> scene, manual
- Display, FridgeDisplay: ``show`` {text, kind: greeting|suggestion|offer|notice, source?}
  -> showing, kind
- Watch: ``vibrate`` {level: 1..3, reason, source?} (kept, not reported); it reports
  heart_rate_bpm, and workout, workout_kind, duration_min

A command that is unknown, malformed or out of range (or carries a parameter that is not
listed) changes nothing: it is recorded in :attr:`Appliance.rejected` and answered with
telemetry ``{"rejected_command": name, "why": ...}``. Nothing a command carries can stop
the appliance's MQTT thread. A ``command_id`` seen before (a QoS 1 redelivery) is ignored.

Whoever plays the appliances (``hub-sim room``, ``hub-sim watch``) can :meth:`Appliance.listen`:
a :class:`Note` for every command obeyed or refused and every change of state, in order.

Telemetry is published in the order the changes happened, by a publisher thread of the
appliance, so the MQTT thread never waits on the appliance's lock and the other way round.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final, Literal, Self

from devices.client import DeviceClient, new_event_id
from devices.contract import Command, HeartbeatEvent, TelemetryEvent, utcnow
from devices.topics import valid_id

log = logging.getLogger(__name__)

Reading = float | int | str | bool
State = dict[str, Reading]

DEMO_VENUE: Final = "demo-resort"
SCENES: Final = ("warm", "bright", "relax", "off")
SHOW_KINDS: Final = ("greeting", "suggestion", "offer", "notice")
MIN_CELSIUS, MAX_CELSIUS = 16.0, 28.0
DRIFT_PER_TICK: Final = 0.5
MANUAL_SOURCE: Final = "guest"  # the ``source`` a guest's own hand on the device reports
MAX_TEXT: Final = 500
MAX_SOURCE: Final = 64
_SEEN_IDS: Final = 1024  # command ids remembered for duplicate suppression


class ParamError(ValueError):
    """A command the appliance refuses; the message says why."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A command the appliance refused, and why."""

    command_id: str
    name: str
    why: str


@dataclass(frozen=True, slots=True)
class Shown:
    """One thing a display showed."""

    text: str
    kind: str
    command_id: str


@dataclass(frozen=True, slots=True)
class Vibration:
    """One vibration a watch was asked for."""

    level: int
    reason: str
    command_id: str


@dataclass(frozen=True, slots=True)
class Note:
    """Something an appliance did, as told to its listeners (see :meth:`Appliance.listen`).

    ``obeyed`` and ``rejected`` carry the command (and ``why`` it was refused); ``changed``
    carries the readings that changed as (name, before, after), ``before`` None when new.
    A command's changes are told right after the command.
    """

    at: datetime
    device_id: str
    what: Literal["obeyed", "rejected", "changed"]
    command: Command | None = None
    why: str = ""
    changes: tuple[tuple[str, Reading | None, Reading], ...] = ()


Listener = Callable[[Note], None]


# ------------------------------------------------------------------ validation


def _check_keys(params: Mapping[str, Any], required: set[str], optional: set[str]) -> None:
    missing = sorted(required - params.keys())
    if missing:
        raise ParamError(f"missing param {missing[0]!r}")
    unknown = sorted(params.keys() - required - optional - {"source"})
    if unknown:
        raise ParamError(f"unknown param {unknown[0]!r}")


def _source(params: Mapping[str, Any], default: str = "hub") -> str:
    value = params.get("source", default)
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_SOURCE:
        raise ParamError(f"source must be a string of 1..{MAX_SOURCE} characters")
    return value


def _celsius(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParamError(f"celsius must be a number, not {value!r}")
    if not MIN_CELSIUS <= value <= MAX_CELSIUS:
        raise ParamError(f"celsius {value!r} is outside {MIN_CELSIUS:g}..{MAX_CELSIUS:g}")
    return float(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ParamError(f"{name} must be one of {'|'.join(choices)}, not {value!r}")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise ParamError(f"{name} must be a non-empty string of at most {MAX_TEXT} characters")
    return value


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------ the base


class Appliance:
    """One appliance: its state, its commands, its MQTT connection."""

    kind: ClassVar[str] = "appliance"

    def __init__(self, venue: str, device_id: str, *, host: str = "127.0.0.1", port: int = 1883,
                 username: str | None = None, password: str | None = None) -> None:
        if not (valid_id(venue) and valid_id(device_id)):
            raise ValueError(f"not a valid venue or device id: {venue!r}, {device_id!r}")
        self.venue, self.device_id = venue, device_id
        self.host, self.port = host, port
        self._username, self._password = username, password
        # Set before connect(): speak TLS, trusting this CA file (hub-sim --ca). An attribute,
        # not a parameter, so every kind of appliance has it without repeating it.
        self.tls_ca: Path | None = None
        self._cond = threading.Condition()
        self._state: State = {}
        self._rejected: list[Rejection] = []
        self._accepted: list[Command] = []
        self._seen: deque[str] = deque(maxlen=_SEEN_IDS)
        self._commands: dict[str, Callable[[Command], None]] = {}
        self._listeners: list[Listener] = []
        self._held: list[Note] | None = None  # notes of a command's changes, told after it
        self._outbox: queue.SimpleQueue[TelemetryEvent | HeartbeatEvent | None] = (
            queue.SimpleQueue())
        self._client: DeviceClient | None = None
        self._publisher: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def connect(self, timeout: float = 10.0) -> Self:
        """Connect to the broker as this device and start obeying its commands."""
        if self._client is not None:
            return self
        client = DeviceClient(self.venue, self.device_id, host=self.host, port=self.port,
                              username=self._username, password=self._password,
                              tls_ca=self.tls_ca)
        client.on_command(self._on_command)
        client.connect(timeout)  # ConnectionError (refused, no CONNACK) or OSError
        self._client = client
        self._publisher = threading.Thread(target=self._publish_loop, daemon=True,
                                           name=f"{self.device_id}-publisher")
        self._publisher.start()
        self._started()
        return self

    def close(self) -> None:
        """Publish what is still queued, announce offline and disconnect."""
        self._stopping()
        if self._publisher is not None:
            self._outbox.put(None)
            self._publisher.join(5.0)
            self._publisher = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _started(self) -> None:
        """Hook: called once connected."""

    def _stopping(self) -> None:
        """Hook: called first in close()."""

    @property
    def connected(self) -> bool:
        """Whether the broker session is up right now."""
        return self._client is not None and self._client.connected

    # ------------------------------------------------------------ state

    @property
    def state(self) -> State:
        """A copy of the current state."""
        with self._cond:
            return dict(self._state)

    @property
    def rejected(self) -> list[Rejection]:
        """The commands refused so far, oldest first."""
        with self._cond:
            return list(self._rejected)

    @property
    def accepted(self) -> list[Command]:
        """The commands obeyed so far, oldest first."""
        with self._cond:
            return list(self._accepted)

    def listen(self, listener: Listener) -> None:
        """Tell ``listener`` every command obeyed or refused and every change of state.

        It is called in order, under the appliance's lock, on the thread that made the
        change (the MQTT thread for a command): it must be quick and must not call back
        into the appliance (put the note on a queue). What it raises is logged, not felt.
        """
        with self._cond:
            self._listeners.append(listener)

    def _note(self, note: Note) -> None:
        """Tell the listeners (the caller holds ``self._cond``)."""
        if self._held is not None:
            self._held.append(note)
            return
        for listener in self._listeners:
            try:
                listener(note)
            except Exception:  # a listener's bug must not stop the appliance
                log.exception("%s: a listener failed on %s", self.device_id, note.what)

    def wait_for(self, predicate: Callable[[State], bool], timeout: float = 1.0) -> bool:
        """Wait until the state satisfies ``predicate``; False when ``timeout`` runs out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(dict(self._state)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _change(self, updates: Mapping[str, Reading] | None = None, *,
                telemetry: Mapping[str, Reading] | None = None,
                ts: datetime | None = None) -> None:
        """Apply ``updates`` and queue telemetry: ``telemetry`` if given, else the new state.

        The caller holds ``self._cond``; queueing under it keeps telemetry in change order.
        """
        if updates:
            changes = tuple((name, self._state.get(name), value) for name, value in updates.items()
                            if name not in self._state or self._state[name] != value)
            self._state.update(updates)
            if changes and self._listeners:
                self._note(Note(at=utcnow(), device_id=self.device_id, what="changed",
                                changes=changes))
        readings = dict(self._state if telemetry is None else telemetry)
        self._outbox.put(TelemetryEvent(event_id=new_event_id(), ts=ts or utcnow(),
                                        readings=readings))
        self._cond.notify_all()

    def heartbeat(self, *, battery_pct: int | None = None, firmware: str | None = None,
                  interval_s: int | None = None) -> None:
        """Report that the appliance is alive (in order with its telemetry)."""
        self._outbox.put(HeartbeatEvent(event_id=new_event_id(), ts=utcnow(),
                                        battery_pct=battery_pct, firmware=firmware,
                                        interval_s=interval_s))

    def _publish_loop(self) -> None:
        while (event := self._outbox.get()) is not None:
            client = self._client
            if client is None:
                continue
            try:
                client.publish_event(event)
            except Exception:  # one failed publish must not stop the rest
                log.exception("%s could not publish %s", self.device_id, event.kind)

    # ------------------------------------------------------------ commands

    def _on_command(self, command: Command) -> None:
        """Runs on the MQTT thread: obey or reject; never raise."""
        try:
            with self._cond:
                if command.command_id in self._seen:
                    return  # a redelivery: obeyed (or refused) once already
                self._seen.append(command.command_id)
                self._held = []
                try:
                    verdict = self._obey(command)
                finally:
                    held, self._held = self._held, None
                for note in (verdict, *held):
                    self._note(note)
        except Exception:  # last resort: the MQTT thread lives on
            log.exception("%s could not handle command %s", self.device_id, command.name)

    def _obey(self, command: Command) -> Note:
        """Obey or reject (the caller holds ``self._cond``); the note that says which."""
        try:
            handler = self._commands.get(command.name)
            if handler is None:
                raise ParamError(f"unknown command {command.name!r} for a {self.kind}")
            handler(command)
            self._accepted.append(command)
            return Note(at=utcnow(), device_id=self.device_id, what="obeyed", command=command)
        except ParamError as exc:
            rejection = self._reject(command, str(exc))
        except Exception as exc:  # a bug must not kill the MQTT thread
            log.exception("%s failed on command %s", self.device_id, command.name)
            rejection = self._reject(command, f"internal error: {exc!r}")
        return Note(at=utcnow(), device_id=self.device_id, what="rejected", command=command,
                    why=rejection.why)

    def _reject(self, command: Command, why: str) -> Rejection:
        why = _short(why)
        rejection = Rejection(command.command_id, command.name, why)
        self._rejected.append(rejection)
        self._change(telemetry={"rejected_command": command.name, "why": why})
        return rejection


# ------------------------------------------------------------------ appliances


class Thermostat(Appliance):
    """A room thermostat whose temperature drifts toward its setpoint by 0.5 °C per tick.

    ``manual`` and ``source`` in its state say who set the current setpoint: ``manual`` is
    true after :meth:`manual_set` (a guest at the dial, source ``"guest"``) until the next
    ``set_temperature`` command. With ``tick_s``, a background thread ticks while connected.
    """

    kind = "thermostat"

    def __init__(self, venue: str, device_id: str, *, setpoint_c: float = 21.0,
                 temperature_c: float | None = None, tick_s: float | None = None,
                 host: str = "127.0.0.1", port: int = 1883, username: str | None = None,
                 password: str | None = None) -> None:
        super().__init__(venue, device_id, host=host, port=port, username=username,
                         password=password)
        start = setpoint_c if temperature_c is None else temperature_c
        self._state = {"setpoint_c": float(setpoint_c), "temperature_c": float(start),
                       "mode": "auto", "manual": False, "source": "default"}
        self._commands["set_temperature"] = self._set_temperature
        self.tick_s = tick_s
        self._ticking = threading.Event()
        self._ticker: threading.Thread | None = None

    def _set_temperature(self, command: Command) -> None:
        _check_keys(command.params, {"celsius"}, set())
        celsius = _celsius(command.params["celsius"])
        source = _source(command.params)
        self._change({"setpoint_c": celsius, "manual": False, "source": source})

    def manual_set(self, celsius: float) -> None:
        """A guest turns the dial: a manual override of the setpoint (ValueError if off range)."""
        try:
            value = _celsius(celsius)
        except ParamError as exc:
            raise ValueError(str(exc)) from None
        with self._cond:
            self._change({"setpoint_c": value, "manual": True, "source": MANUAL_SOURCE})

    def tick(self) -> float:
        """Move the temperature 0.5 °C toward the setpoint (telemetry if it moved); return it."""
        with self._cond:
            current = float(self._state["temperature_c"])
            target = float(self._state["setpoint_c"])
            if current == target:
                return current
            step = min(DRIFT_PER_TICK, abs(target - current))
            moved = round(current + math.copysign(step, target - current), 3)
            self._change({"temperature_c": target if abs(target - moved) < 1e-9 else moved})
            return float(self._state["temperature_c"])

    def _started(self) -> None:
        if self.tick_s is not None and self._ticker is None:
            self._ticking.clear()
            self._ticker = threading.Thread(target=self._tick_loop, args=(self.tick_s,),
                                            daemon=True, name=f"{self.device_id}-ticker")
            self._ticker.start()

    def _stopping(self) -> None:
        if self._ticker is not None:
            self._ticking.set()
            self._ticker.join(5.0)
            self._ticker = None

    def _tick_loop(self, every: float) -> None:
        while not self._ticking.wait(every):
            self.tick()


class Light(Appliance):
    """A room light with scenes; ``manual`` says a guest chose the current scene by hand."""

    kind = "light"

    def __init__(self, venue: str, device_id: str, *, scene: str = "off",
                 host: str = "127.0.0.1", port: int = 1883, username: str | None = None,
                 password: str | None = None) -> None:
        super().__init__(venue, device_id, host=host, port=port, username=username,
                         password=password)
        self._state = {"scene": _choice("scene", scene, SCENES), "manual": False}
        self._commands["set_scene"] = self._set_scene

    def _set_scene(self, command: Command) -> None:
        _check_keys(command.params, {"scene"}, set())
        scene = _choice("scene", command.params["scene"], SCENES)
        _source(command.params)
        self._change({"scene": scene, "manual": False})

    def manual_set(self, scene: str) -> None:
        """A guest presses the wall switch (ValueError for an unknown scene)."""
        try:
            value = _choice("scene", scene, SCENES)
        except ParamError as exc:
            raise ValueError(str(exc)) from None
        with self._cond:
            self._change({"scene": value, "manual": True})


class Display(Appliance):
    """A room display: shows greetings, suggestions, offers and notices; keeps what it showed."""

    kind = "display"

    def __init__(self, venue: str, device_id: str, *, host: str = "127.0.0.1", port: int = 1883,
                 username: str | None = None, password: str | None = None) -> None:
        super().__init__(venue, device_id, host=host, port=port, username=username,
                         password=password)
        self._state = {"showing": "", "kind": ""}
        self._shown: list[Shown] = []
        self._commands["show"] = self._show

    def _show(self, command: Command) -> None:
        _check_keys(command.params, {"text", "kind"}, set())
        text = _text("text", command.params["text"])
        kind = _choice("kind", command.params["kind"], SHOW_KINDS)
        _source(command.params)
        self._shown.append(Shown(text, kind, command.command_id))
        self._change({"showing": text, "kind": kind})

    @property
    def shown(self) -> list[Shown]:
        """Everything shown so far, oldest first."""
        with self._cond:
            return list(self._shown)


class FridgeDisplay(Display):
    """The display on a minibar fridge: the same contract as a room display."""

    kind = "fridge_display"


class Watch(Appliance):
    """A guest's smartwatch: reports heart rate and workouts, vibrates when told.

    Its state is ``heart_rate_bpm`` (0 until measured), ``vibrations`` (a count) and
    ``workout_kind`` (the last workout ended, "" before any).
    """

    kind = "watch"
    MORNING: ClassVar[tuple[int, int]] = (6, 11)  # local hours [start, end) that are morning
    MORNING_AT: ClassVar[int] = 8  # the hour reported for a morning workout outside them

    def __init__(self, venue: str, device_id: str, *, tz: tzinfo = UTC,
                 clock: Callable[[], datetime] = utcnow, host: str = "127.0.0.1",
                 port: int = 1883, username: str | None = None,
                 password: str | None = None) -> None:
        super().__init__(venue, device_id, host=host, port=port, username=username,
                         password=password)
        self.tz, self.clock = tz, clock
        self._state = {"heart_rate_bpm": 0, "vibrations": 0, "workout_kind": ""}
        self._vibrations: list[Vibration] = []
        self._commands["vibrate"] = self._vibrate

    def _vibrate(self, command: Command) -> None:
        _check_keys(command.params, {"level", "reason"}, set())
        level = command.params["level"]
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 3:
            raise ParamError(f"level must be an integer 1..3, not {level!r}")
        reason = _text("reason", command.params["reason"])
        _source(command.params)
        self._vibrations.append(Vibration(level, reason, command.command_id))
        # A vibration is felt, not reported: the spec has no telemetry for it.
        self._state["vibrations"] = len(self._vibrations)
        self._cond.notify_all()

    @property
    def vibrations(self) -> list[Vibration]:
        """Every vibration received, oldest first."""
        with self._cond:
            return list(self._vibrations)

    def heart_rate(self, bpm: int) -> None:
        """Report a heart rate (ValueError unless an integer 20..250)."""
        if isinstance(bpm, bool) or not isinstance(bpm, int) or not 20 <= bpm <= 250:
            raise ValueError(f"heart rate must be an integer 20..250 bpm, not {bpm!r}")
        with self._cond:
            self._change({"heart_rate_bpm": bpm}, telemetry={"heart_rate_bpm": bpm})

    def workout_ended(self, kind: str, minutes: int, at_morning: bool = False) -> datetime:
        """Report a finished workout; return the event's timestamp.

        With ``at_morning`` the event is stamped in the morning (in ``tz``): now if it is
        morning already, else the latest 08:00 before now, so the hub's time-of-day rules
        see a morning workout whatever the wall clock says.
        """
        if not isinstance(kind, str) or not kind.strip() or len(kind) > MAX_SOURCE:
            raise ValueError(f"workout kind must be a short non-empty string, not {kind!r}")
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 1440:
            raise ValueError(f"minutes must be an integer 1..1440, not {minutes!r}")
        ts = self.morning() if at_morning else self.clock()
        with self._cond:
            self._change({"workout_kind": kind}, ts=ts, telemetry={
                "workout": "ended", "workout_kind": kind, "duration_min": minutes})
        return ts

    def morning(self) -> datetime:
        """Now if it is morning in ``tz``, else the latest MORNING_AT o'clock before now."""
        now = self.clock().astimezone(self.tz)
        start, end = self.MORNING
        if start <= now.hour < end:
            return now
        at = now.replace(hour=self.MORNING_AT, minute=0, second=0, microsecond=0)
        return at if at <= now else at - timedelta(days=1)


# ------------------------------------------------------------------ a room


class Room:
    """A hotel room's appliances: ``thermostat-N``, ``light-N`` and ``display-N``, and with
    ``fridge`` the minibar's display ``fridge-N``.

    ``credentials`` maps a device id to its (username, password) on a secure broker;
    devices not in it use ``username``/``password``.
    """

    def __init__(self, venue: str, room_number: int | str, *, host: str = "127.0.0.1",
                 port: int = 1883, username: str | None = None, password: str | None = None,
                 credentials: Mapping[str, tuple[str, str]] | None = None,
                 setpoint_c: float = 21.0, tick_s: float | None = None,
                 fridge: bool = False, tls_ca: Path | None = None) -> None:
        self.venue, self.number = venue, str(room_number)
        creds = dict(credentials or {})

        def login(device_id: str) -> tuple[str | None, str | None]:
            return creds.get(device_id, (username, password))

        n = self.number
        user, pw = login(f"thermostat-{n}")
        self.thermostat = Thermostat(venue, f"thermostat-{n}", setpoint_c=setpoint_c,
                                     tick_s=tick_s, host=host, port=port, username=user,
                                     password=pw)
        user, pw = login(f"light-{n}")
        self.light = Light(venue, f"light-{n}", host=host, port=port, username=user,
                           password=pw)
        user, pw = login(f"display-{n}")
        self.display = Display(venue, f"display-{n}", host=host, port=port, username=user,
                               password=pw)
        self.fridge: FridgeDisplay | None = None
        if fridge:
            user, pw = login(f"fridge-{n}")
            self.fridge = FridgeDisplay(venue, f"fridge-{n}", host=host, port=port,
                                        username=user, password=pw)
        # One condition for the room: any appliance's change wakes a room-wide wait_for.
        self._cond = threading.Condition()
        for appliance in self.appliances:
            appliance._cond = self._cond
            appliance.tls_ca = tls_ca

    @property
    def appliances(self) -> tuple[Appliance, ...]:
        """The room's appliances: thermostat, light, display (then the fridge's, if any)."""
        room: tuple[Appliance, ...] = (self.thermostat, self.light, self.display)
        return room if self.fridge is None else (*room, self.fridge)

    def listen(self, listener: Listener) -> None:
        """Tell ``listener`` what every appliance of the room does (see Appliance.listen)."""
        for appliance in self.appliances:
            appliance.listen(listener)

    def connect(self, timeout: float = 10.0) -> Self:
        """Connect every appliance; on a failure, close those already connected and raise."""
        done: list[Appliance] = []
        try:
            for appliance in self.appliances:
                appliance.connect(timeout)
                done.append(appliance)
        except BaseException:
            for connected in done:
                connected.close()
            raise
        return self

    def close(self) -> None:
        """Disconnect every appliance."""
        for appliance in self.appliances:
            appliance.close()

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def state(self) -> dict[str, State]:
        """Each appliance's state, by kind: ``thermostat``, ``light``, ``display``
        (and ``fridge_display``)."""
        return {a.kind: a.state for a in self.appliances}

    def wait_for(self, predicate: Callable[[dict[str, State]], bool],
                 timeout: float = 1.0) -> bool:
        """Wait until the room's state satisfies ``predicate``; False when time runs out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.state):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True
