"""What the hub says when its bridge cannot reach its broker, or is refused by it: the
address it tried, what failed, and what to check."""

from __future__ import annotations

import socket
import ssl


class BrokerUnreachable(ConnectionError):
    """The bridge could not connect or log in to its broker; the message says what to check."""

    def __init__(self, address: str, problem: str, *, external: bool) -> None:
        self.address, self.problem, self.external = address, problem, external
        where = (f"the MQTT broker at {address} (--broker, HUB_BROKER_URL)" if external
                 else f"the embedded MQTT broker at {address}")
        super().__init__(f"cannot reach {where}: {problem}")

    def __repr__(self) -> str:
        return f"BrokerUnreachable({self.address!r}, {self.problem!r}, external={self.external})"


def address(host: str, port: int, *, tls: bool) -> str:
    """The broker's address as a URL, as it would be given to --broker."""
    return f"{'mqtts' if tls else 'mqtt'}://{host}:{port}"


def connect_problem(exc: OSError, *, port: int, tls: bool) -> str:
    """Why a connection attempt failed, and what to check, in words."""
    if isinstance(exc, socket.gaierror):
        return (f"no such host ({exc.strerror}): check the host name in the broker's "
                "address")
    if isinstance(exc, ConnectionRefusedError):
        return (f"nothing accepts connections on port {port} there (connection refused): is "
                "the broker running, and listening on that port and address?")
    if isinstance(exc, TimeoutError):
        return ("no answer (timed out): is the host up, is the address right, and does a "
                "firewall let MQTT through?")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"its TLS certificate is not trusted ({exc.verify_message}): give its CA "
                "with HUB_MQTT_TLS_CA, and reach it by a name its certificate carries")
    if isinstance(exc, ssl.SSLError):
        other = "plain MQTT (mqtt://, usually 1883)" if tls else "TLS (mqtts://, usually 8883)"
        why = getattr(exc, "reason", None) or exc  # set by the ssl module, not by hand
        return (f"the TLS handshake failed ({why}): does this port speak "
                f"{other} instead?")
    if tls and isinstance(exc, ConnectionResetError):
        return ("the connection was reset during the TLS handshake: does this port speak "
                "plain MQTT (mqtt://, usually 1883)?")
    return f"{exc.strerror or exc}: check the address and that the broker runs there"


def login_problem(reason: str, *, external: bool, who: str = "bridge") -> str:
    """Why the broker refused the CONNECT of ``who`` (the bridge, the API's publisher: both
    log in as HUB_MQTT_USERNAME), and what to check."""
    if not external:
        return f"it refused the {who}'s login ({reason})"
    return (f"it refused the {who}'s login ({reason}): check HUB_MQTT_USERNAME and "
            "HUB_MQTT_PASSWORD (for Mosquitto, `hub provision mosquitto` writes its password "
            "file and `hub provision device-sheet` the bridge's password)")
