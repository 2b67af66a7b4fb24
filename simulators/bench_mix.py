"""The bench's traffic: which device sends what, in which proportions, and the bytes.

Pure but for the clock in the payloads: a seeded :class:`Mix` gives the same sequence of
(device, what to send) to the echo and to the hub, so both carry the same messages
from the same connections; :class:`Traffic` turns each into a contract payload at send
time (a fresh ``event_id``, ``ts`` now). Which devices and bands exist comes from the
hub's REST API (``simulators/bench_venue.py``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from devices.contract import TapEvent, WristbandCredential, encode, utcnow
from simulators.readers import payment_request

Role = Literal["park_in", "park_out", "ride", "lock", "pos"]
MixName = Literal["realistic", "locks"]
ROLES: tuple[Role, ...] = ("park_in", "park_out", "ride", "lock", "pos")

# Shares of the devices per role in the realistic mix; park gates take the rest, split in/out.
SHARES: dict[Role, float] = {"ride": 0.1, "lock": 0.2, "pos": 0.2}
UNKNOWN_SHARE = 0.05  # bands the hub has never seen (a visitor's own NFC card, a typo'd UID)
LOST_SHARE = 0.01  # bands reported lost, still tapped by whoever found them
# Payments above the PIN threshold, with the right PIN. Rare on purpose: each costs the hub
# an argon2 verification (tens of ms), which would otherwise decide the bench alone.
PIN_SHARE = 0.02
AMOUNTS = (350, 450, 800, 1150, 1500, 2400)  # minor units: coffee to lunch


@dataclass(frozen=True, slots=True)
class BenchDevice:
    """One device the bench plays: its id, role and what a message from it needs."""

    device_id: str
    role: Role
    zone_id: str | None = None
    direction: Literal["in", "out"] | None = None
    merchant_id: str | None = None
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class Pools:
    """Who taps where: wristband UIDs by purpose."""

    park: tuple[str, ...] = ()  # guests with a ticket to the park
    rides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # ride zone -> bands
    rooms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # room zone -> bands
    payers: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    pin_band: str | None = None  # a guest with a PIN, whose PIN the bench knows
    pin: str | None = None
    pin_amount: int | None = None  # above that guest's threshold


@dataclass(frozen=True, slots=True)
class Spec:
    """What one message is; the payload is built from it when it is sent."""

    what: str  # park_in, park_out, ride, lock, pay, pay_pin, unknown, lost: for the report
    uid: str
    payment: bool = False
    direction: Literal["in", "out"] | None = None
    amount: int | None = None
    merchant_id: str | None = None
    currency: str = "USD"
    pin: str | None = None


def allocate(n: int, mix: MixName) -> list[Role]:
    """The role of each of ``n`` devices: all locks for ``locks``, else by SHARES."""
    if n < 1:
        raise ValueError("the bench needs at least one device")
    if mix == "locks":
        return ["lock"] * n
    counts = {role: int(n * share + 0.5) for role, share in SHARES.items()}
    while sum(counts.values()) >= n:  # park gates keep at least one device
        counts[max(counts, key=lambda r: counts[r])] -= 1
    park = n - sum(counts.values())
    ins: list[Role] = ["park_in"] * ((park + 1) // 2)
    outs: list[Role] = ["park_out"] * (park // 2)
    roles = ins + outs
    for role in SHARES:
        roles += [role] * counts[role]
    return roles


def unknown_uid(rng: random.Random) -> str:
    """A 7-byte UID under a prefix the demo never issues."""
    return f"04FE{rng.getrandbits(40):010X}"


class Mix:
    """An endless, seeded sequence of (device index, Spec), round-robin over the devices.

    It remembers who it sent into the park, so out-gates mostly see guests who are in
    and in-gates guests who are out, as at a real gate; the hub decides anti-passback for
    itself, and a tap the two disagree on is a denial, not an error.
    """

    def __init__(self, devices: Sequence[BenchDevice], pools: Pools, *, mix: MixName,
                 seed: int) -> None:
        if not devices:
            raise ValueError("a mix needs devices")
        self.devices = tuple(devices)
        self.pools = pools
        self.mix = mix
        self._rng = random.Random(seed)
        self._k = 0
        self._outside = list(pools.park)
        self._inside: list[str] = []
        self.sent: Counter[str] = Counter()

    def next(self) -> tuple[int, Spec]:
        """The next device (in turn) and what it sends."""
        index = self._k % len(self.devices)
        self._k += 1
        spec = self._spec(self.devices[index])
        self.sent[spec.what] += 1
        return index, spec

    def _spec(self, device: BenchDevice) -> Spec:
        rng, pools = self._rng, self.pools
        if self.mix == "realistic":
            draw = rng.random()
            if draw < UNKNOWN_SHARE:
                return self._as(device, "unknown", unknown_uid(rng))
            if draw < UNKNOWN_SHARE + LOST_SHARE and pools.lost:
                return self._as(device, "lost", rng.choice(pools.lost))
        if device.role == "park_in":
            uid = self._move(self._outside, self._inside)
            return Spec("park_in", uid, direction="in")
        if device.role == "park_out":
            uid = self._move(self._inside, self._outside)
            return Spec("park_out", uid, direction="out")
        if device.role == "ride":
            return Spec("ride", rng.choice(pools.rides[device.zone_id or ""]))
        if device.role == "lock":
            return Spec("lock", rng.choice(pools.rooms[device.zone_id or ""]))
        if pools.pin_band is not None and rng.random() < PIN_SHARE:
            return Spec("pay_pin", pools.pin_band, payment=True, amount=pools.pin_amount,
                        merchant_id=device.merchant_id, currency=device.currency, pin=pools.pin)
        return Spec("pay", rng.choice(pools.payers), payment=True, amount=rng.choice(AMOUNTS),
                    merchant_id=device.merchant_id, currency=device.currency)

    def _as(self, device: BenchDevice, what: str, uid: str) -> Spec:
        """A stray band at ``device``: a tap at a reader, a payment at a terminal."""
        if device.role == "pos":
            return Spec(what, uid, payment=True, amount=self._rng.choice(AMOUNTS),
                        merchant_id=device.merchant_id, currency=device.currency)
        return Spec(what, uid, direction=device.direction)

    def _move(self, source: list[str], target: list[str]) -> str:
        """A band from ``source`` (moved to ``target``); any band when ``source`` is empty."""
        if not source:
            return self._rng.choice(target)
        i = self._rng.randrange(len(source))
        source[i], source[-1] = source[-1], source[i]
        uid = source.pop()
        target.append(uid)
        return uid


def payload(spec: Spec, event_id: str) -> bytes:
    """The contract message for ``spec``, stamped now."""
    band = WristbandCredential(uid=spec.uid)
    if spec.payment:
        assert spec.amount is not None and spec.merchant_id is not None
        request = payment_request(band, amount=spec.amount, currency=spec.currency,
                                  merchant_id=spec.merchant_id, pin=spec.pin, event_id=event_id)
        return encode(request)
    return encode(TapEvent(event_id=event_id, ts=utcnow(), credential=band,
                           direction=spec.direction))


class Traffic:
    """A Mix as payloads: (device index, event id, bytes), each built when asked for."""

    def __init__(self, mix: Mix, tag: str) -> None:
        self.mix = mix
        self._tag = tag
        self._n = 0

    def next(self) -> tuple[int, str, bytes]:
        index, spec = self.mix.next()
        self._n += 1
        # Same length for the echo and the hub (equal tags), unique per run and device.
        event_id = f"{self._tag}-{self._n:08d}"
        return index, event_id, payload(spec, event_id)
