"""The embedded broker in a process of its own, so it does not share the deciding
interpreter: amqtt spends about as much CPU on a tap (two messages in, two out) as the
hub spends deciding it, and on two cores each side now gets one.

The child runs :class:`hub.broker.EmbeddedBroker` unchanged and answers on a pipe; it
ends when told to, and on its own when the pipe breaks (the hub died, even by SIGKILL),
so it never outlives the hub holding the port.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import signal
import threading
from collections import Counter
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized

from hub.broker_auth import NO_CHANGES, BrokerAuth, Logins, Refusal
from hub.ports import CannotListen
from hub.tls import TlsListener

log = logging.getLogger(__name__)

# The refusal reasons EmbeddedBroker counts, shared with the parent in this order.
_REASONS = ("login", "takeover", "crowd", "publish")
_COPY_EVERY = 0.2  # seconds between copies of the child's counters
_KEPT_REFUSALS = 1000  # refusals waiting for the hub to audit them; more are only counted


def _serve(conn: Connection, host: str, port: int, auth: BrokerAuth | None,
           bridge_login: tuple[str, str] | None, counts: list[Synchronized[int]],
           refused: multiprocessing.Queue[Refusal], log_level: str, logins: Logins,
           tls: TlsListener | None) -> None:
    """The child: run the broker until told to stop or until the parent is gone."""
    # Ctrl-C reaches the whole process group, and systemd's SIGTERM the whole unit: only
    # the hub may stop its broker, after the bridge has answered what the broker holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level.upper(), format="%(name)s: %(message)s")
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    logging.getLogger("transitions").setLevel(logging.WARNING)
    from hub.broker import EmbeddedBroker  # here: the parent never imports amqtt for this

    broker = EmbeddedBroker(host, port, auth=auth, bridge_login=bridge_login, logins=logins,
                            tls=tls)
    try:
        broker.start()
    except CannotListen as exc:  # which port, and why: the hub names the flag to change
        conn.send(("error", exc))
        return
    except OSError as exc:
        conn.send(("error", str(exc)))
        return
    conn.send(("ok", ""))
    done = threading.Event()

    def copy_counters() -> None:
        while not done.wait(_COPY_EVERY):
            refusals = broker.refusals
            for value, reason in zip(counts, _REASONS, strict=True):
                value.value = refusals.get(reason, 0)
            for refusal in broker.take_refusals():
                with contextlib.suppress(queue.Full):  # a flood: the counters still count
                    refused.put_nowait(refusal)

    threading.Thread(target=copy_counters, name="broker-counters", daemon=True).start()
    try:
        # ("logins", {...}) as logins are re-issued or revoked; "stop", or EOFError when the
        # parent is gone, ends it.
        while (message := conn.recv()) != "stop":
            if isinstance(message, tuple) and message[0] == "logins":
                broker.set_logins(message[1])
    except (EOFError, OSError):
        pass
    finally:
        done.set()
        broker.stop()


class BrokerProcess:
    """:class:`hub.broker.EmbeddedBroker`'s interface, served from a child process."""

    def __init__(self, host: str, port: int, *, auth: BrokerAuth | None = None,
                 bridge_login: tuple[str, str] | None = None, log_level: str = "WARNING",
                 logins: Logins = NO_CHANGES, tls: TlsListener | None = None) -> None:
        self.host, self.port, self.tls = host, port, tls
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._conn, child = ctx.Pipe()
        self._counts: list[Synchronized[int]] = [ctx.Value("q", 0) for _ in _REASONS]
        self._refused: multiprocessing.Queue[Refusal] = ctx.Queue(_KEPT_REFUSALS)
        self._process = ctx.Process(
            target=_serve, name="hub-broker",
            args=(child, host, port, auth, bridge_login, self._counts, self._refused, log_level,
                  dict(logins), tls),
            daemon=True)
        self._child_end = child
        self._pid: int | None = None  # kept for repr: a closed Process no longer says
        self._stopped = False
        self._sending = threading.Lock()  # logins (the follower) and stop (the hub) share the pipe

    def start(self, timeout: float = 30.0) -> None:
        """Start the child and wait until it listens; OSError when it cannot (and then
        nothing of it is left: no process, no pipe)."""
        try:
            self._process.start()
        except BaseException:
            self.stop()
            raise
        self._pid = self._process.pid
        self._child_end.close()  # only the child holds it now: its exit breaks the pipe
        if not self._conn.poll(timeout):
            self.stop()
            raise OSError(f"the embedded MQTT broker did not start within {timeout:.0f}s")
        try:
            status, detail = self._conn.recv()
        except EOFError:
            status, detail = "error", f"its process ended (exit code {self._process.exitcode})"
        if isinstance(detail, CannotListen):
            self.stop()
            raise detail
        if status != "ok":
            self.stop()
            raise OSError(detail if "cannot listen" in detail else
                          f"the embedded MQTT broker cannot start on {self.host}:{self.port}: "
                          f"{detail}")
        log.info("embedded MQTT broker on mqtt://%s:%d%s (process %s)", self.host, self.port,
                 f" and mqtts://{self.host}:{self.tls.port}" if self.tls else "",
                 self._process.pid)

    @property
    def alive(self) -> bool:
        """Is the broker's process running?"""
        with contextlib.suppress(ValueError):  # closed by stop(): it has ended
            return self._process.is_alive()
        return False

    @property
    def refusals(self) -> Counter[str]:
        """Refusals by reason (see EmbeddedBroker.refusals), as last copied from the child
        (every 0.2 s)."""
        return Counter({reason: value.value for reason, value in
                        zip(_REASONS, self._counts, strict=True) if value.value})

    def take_refusals(self) -> list[Refusal]:
        """The refusals the child reported since the last call (see EmbeddedBroker)."""
        taken: list[Refusal] = []
        with contextlib.suppress(queue.Empty, OSError, ValueError):
            while len(taken) < _KEPT_REFUSALS:
                taken.append(self._refused.get_nowait())
        return taken

    def set_logins(self, logins: Logins) -> None:
        """Hand the broker the re-issued and revoked logins (see EmbeddedBroker.set_logins)."""
        with self._sending:
            if self._stopped or self._process.pid is None:
                return
            self._conn.send(("logins", dict(logins)))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker and its process; calling it again does nothing."""
        with self._sending:
            if self._stopped:
                return
            self._stopped = True
            started = self._process.pid is not None
            if started:
                with contextlib.suppress(OSError, ValueError):  # gone already
                    self._conn.send("stop")
        if started:
            self._process.join(timeout)
            if self._process.is_alive():
                log.error("embedded broker: its process did not stop within %.0fs; killing "
                          "it", timeout)
                self._process.kill()
                self._process.join(2)
        self._release()

    def _release(self) -> None:
        """Close every pipe this side holds, started or not: a hub that restarts its broker,
        or a test suite that starts hundreds, must not keep them open until the garbage
        collector comes by (or for ever, should anything still refer to this object)."""
        self._conn.close()
        self._child_end.close()
        # Python 3.11's Queue.close() closes its pipe only in a process that put into it,
        # and this side only takes: close both ends of it here.
        self._refused.close()
        for end in (getattr(self._refused, "_reader", None),
                    getattr(self._refused, "_writer", None)):
            if end is not None:
                end.close()
        if not self.alive:
            with contextlib.suppress(ValueError):  # never started: nothing to close
                self._process.close()  # its sentinel's pipes

    def __repr__(self) -> str:
        return f"BrokerProcess({self.host}:{self.port}, pid={self._pid})"
