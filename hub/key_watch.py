"""Every hub process follows the phone-key signing key file: when another process of the
fleet rotates it (``ensure_keys`` at its start), this one verifies and signs with the
new keys within seconds, without a restart, and publishes the new public keys."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from hub.phone_keys import SigningKey, load_keys

log = logging.getLogger(__name__)

CHECK_EVERY = 5.0  # seconds between looks at the file


class KeyWatch:
    """Calls ``changed(keys)`` when the key file's set of key ids changes."""

    def __init__(self, path: Path, keys: list[SigningKey],
                 changed: Callable[[list[SigningKey]], None]) -> None:
        self.path, self.changed = path, changed
        self._kids = {k.kid for k in keys}
        self._seen = self._stamp()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hub-key-watch", daemon=True)

    def start(self) -> KeyWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    def check(self) -> bool:
        """Reload if the file changed; whether the keys did."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return False
        try:
            keys = load_keys(self.path)
        except (OSError, ValueError) as exc:  # being written, or broken: keep ours
            log.warning("phone-key signing keys not reloaded from %s: %s", self.path, exc)
            return False
        self._seen = stamp
        kids = {k.kid for k in keys}
        if kids == self._kids:
            return False
        log.warning("phone-key signing keys changed on disk (another process rotated them): "
                    "now %s", ", ".join(sorted(kids)))
        self._kids = kids
        self.changed(keys)
        return True

    def _loop(self) -> None:
        while not self._stop.wait(CHECK_EVERY):
            try:
                self.check()
            except Exception:  # a failed reload must not end the watch
                log.exception("phone-key signing keys: reload failed")
