"""The ports the hub listens on: is one free, and if not, which one and why."""

from __future__ import annotations

import errno
import socket
from typing import Literal

# The setting each listener's port comes from (a field of hub.config.Settings).
Listener = Literal["mqtt_port", "mqtt_tls_port", "http_port"]

_WHO = {"mqtt_port": "the embedded MQTT broker",
        "mqtt_tls_port": "the embedded MQTT broker's TLS listener",
        "http_port": "the REST API"}


class CannotListen(OSError):
    """A listener cannot bind its address: the port is in use, privileged, or the host is
    not this machine's. ``listener`` says which setting chose the port."""

    def __init__(self, listener: Listener, host: str, port: int, code: int,
                 reason: str) -> None:
        super().__init__(code, reason)
        self.listener, self.host, self.port = listener, host, port

    @property
    def in_use(self) -> bool:
        """Is the port taken by another program (rather than refused for another reason)?"""
        return self.errno == errno.EADDRINUSE

    def __str__(self) -> str:
        return f"{_WHO[self.listener]} cannot listen on {self.host}:{self.port}: {self.strerror}"

    def __repr__(self) -> str:
        return (f"CannotListen({self.listener!r}, {self.host!r}, {self.port}, "
                f"{self.errno}, {self.strerror!r})")

    def __reduce__(self) -> tuple[object, ...]:  # across the broker's process boundary
        return CannotListen, (self.listener, self.host, self.port, self.errno, self.strerror)


def check_free(listener: Listener, host: str, port: int) -> None:
    """Raise CannotListen unless ``host:port`` can be bound now, at every address the host
    name has, as the listeners bind (SO_REUSEADDR: a port in TIME_WAIT is free, one with
    a listener is not)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CannotListen(listener, host, port, errno.EADDRNOTAVAIL,
                           f"no such address on this machine ({exc.strerror})") from exc
    for family, kind, proto, _name, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio binds it: IPv6 alone
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise CannotListen(listener, host, port, exc.errno or 0,
                                   exc.strerror or str(exc)) from exc
