"""argon2 PIN checks done ahead of the decision, on a thread of their own.

An argon2id check costs tens of milliseconds by design. Done inside the batch's write
transaction it held up every tap of the batch and the database's write lock; here the
bridge hands a payment that carries a PIN to this thread first, which checks the PIN
against the payer's current hash and puts the payment back in line. The decision then
finds the answer ready. If the hash changed meanwhile (a new PIN), the answer does not
match and the check is simply done again, inside: never a wrong answer, only a slow one.

argon2-cffi releases the GIL while it hashes, so the check runs on the other core.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from typing import Any

from hub.security import verify_secret

# Answers waiting for their payment's decision; one each, taken once.
MAX_WAITING = 10_000


def _key(hashed: str, pin: str) -> bytes:
    return hashlib.sha256(hashed.encode() + b"\x00" + pin.encode()).digest()


class PinChecks:
    """PIN answers computed ahead, taken by the decision that needs them."""

    def __init__(self) -> None:
        self._ready: OrderedDict[bytes, bool] = OrderedDict()
        self._lock = threading.Lock()
        self.ahead = 0  # answers the decision found ready
        self.inline = 0  # answers it had to compute itself

    def check_ahead(self, hashed: str, pin: str) -> None:
        """Compute the answer for (hash, PIN) now, for the decision to take later."""
        answer = verify_secret(hashed, pin)
        with self._lock:
            self._ready[_key(hashed, pin)] = answer
            while len(self._ready) > MAX_WAITING:
                self._ready.popitem(last=False)

    def verify(self, hashed: str, pin: str) -> bool:
        """The answer computed ahead, taken once; else computed now."""
        with self._lock:
            answer = self._ready.pop(_key(hashed, pin), None)
        if answer is not None:
            self.ahead += 1
            return answer
        self.inline += 1
        return verify_secret(hashed, pin)


def redact_pins(payload: bytes) -> bytes:
    """The payload with every ``pin`` value masked, however its key was spelled in JSON
    (``"\\u0070in"`` is ``"pin"`` too): what may be kept of a message. A payload that is
    not JSON keeps no digits after anything that looks like a pin key."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return _LOOSE_PIN.sub(rb"\1***", payload)
    return json.dumps(_masked(data), ensure_ascii=True).encode()


_LOOSE_PIN = re.compile(rb'((?:"|\\u0070|p)(?:i|\\u0069)(?:n|\\u006e)"?\s*:?\s*"?)[^",}\s]*',
                        re.IGNORECASE)


def _masked(value: Any, depth: int = 0) -> Any:
    if depth > 64:
        return "***"
    if isinstance(value, dict):
        return {k: "***" if k.lower() == "pin" else _masked(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, depth + 1) for v in value]
    return value
