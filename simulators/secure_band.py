"""A simulated secure wristband: an NTAG 424 DNA tag with Secure Dynamic Messaging (SUN).

Each read of a real tag increments its 3-byte SDM read counter and mirrors fresh
SUN data (encrypted PICC data and a truncated CMAC, NXP AN12196) into the URL the
reader sees. :class:`SecureBand` does the same with the keys an encoding station
wrote onto the tag (the demo's provisioning sheet lists them per UID).

The hub remembers the highest counter it accepted for each band, across runs and
restarts, and refuses any read that does not exceed it. A simulated band has no
memory of its own between runs, so it starts from :func:`initial_counter`, which
grows with the clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from devices.contract import WristbandSunCredential
from devices.sun import KEY_LEN, MAX_READ_CTR, UID_LEN, make_sun

# Seconds since the epoch modulo 2**23: grows by one a second and stays far below the
# tag's 24-bit ceiling, so a band can be read millions of times after starting there.
# It wraps every ~97 days; a hub that saw this band before the wrap refuses its reads
# as replayed until the clock catches up again.
COUNTER_MODULUS = 2**23


def initial_counter(now_s: float | None = None) -> int:
    """The read counter a simulated band starts from: above those of earlier runs.

    Unix seconds modulo 2**23, so a run that reads a band fewer times than the
    seconds it takes leaves the next run's counters above its own.
    """
    seconds = time.time() if now_s is None else now_s
    if seconds < 0:
        raise ValueError("now_s must not be negative")
    return int(seconds) % COUNTER_MODULUS


@dataclass
class SecureBand:
    """One secure wristband: its UID, its SDM keys and its read counter.

    ``counter`` is the value of the last read; :meth:`read` increments it first, as
    the tag does, so the first read reports ``counter + 1``.
    """

    uid: str
    meta_read_key: bytes = field(repr=False)
    file_read_key: bytes = field(repr=False)
    counter: int = field(default_factory=initial_counter)

    def __post_init__(self) -> None:
        self.uid = self.uid.upper()
        try:
            uid = bytes.fromhex(self.uid)
        except ValueError:
            raise ValueError(f"a UID is hex, not {self.uid!r}") from None
        if len(uid) != UID_LEN:
            raise ValueError(f"a secure band's UID is {UID_LEN} bytes, got {len(uid)}")
        for name in ("meta_read_key", "file_read_key"):
            if len(getattr(self, name)) != KEY_LEN:
                raise ValueError(f"{name} must be {KEY_LEN} bytes")
        if not 0 <= self.counter < MAX_READ_CTR:
            raise ValueError(f"counter must be in 0..{MAX_READ_CTR - 1}, got {self.counter}")

    @classmethod
    def from_hex_keys(cls, uid: str, meta_read_key: str, file_read_key: str,
                      counter: int | None = None) -> SecureBand:
        """A band from the hex keys of a provisioning sheet."""
        try:
            meta, file_key = bytes.fromhex(meta_read_key), bytes.fromhex(file_read_key)
        except ValueError:
            raise ValueError(f"the keys of band {uid} are not hex") from None
        if counter is None:
            return cls(uid, meta, file_key)
        return cls(uid, meta, file_key, counter)

    def read(self) -> WristbandSunCredential:
        """Tap the band: the counter goes up by one and fresh SUN data comes out."""
        if self.counter >= MAX_READ_CTR:
            raise RuntimeError("the read counter is exhausted: the tag no longer answers")
        self.counter += 1
        picc, cmac = make_sun(bytes.fromhex(self.uid), self.counter,
                              meta_read_key=self.meta_read_key, file_read_key=self.file_read_key)
        return WristbandSunCredential(picc=picc, cmac=cmac)
