"""How the hub's own MQTT clients reach the broker: the bridge (:mod:`hub.bridge`) and the
API's publisher (:mod:`hub.publisher`) log in, speak TLS and pick the protocol from the
same settings, and say the same thing when they cannot connect at start."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from devices.client import nodelay
from hub import broker_errors
from hub.config import Settings

log = logging.getLogger(__name__)


class Link:
    """What a hub client knows of its connection to the broker, kept by its on_connect and
    on_disconnect: connected now, the broker's last answer, and which connection this is
    (``generation``: a message id means nothing on another one)."""

    def __init__(self, who: str, counters: Counter[str]) -> None:
        self.who = who  # "bridge", "API's publisher": for the log
        self.counters = counters  # the client's own: connect_refused, disconnects
        self.connected = threading.Event()
        self.answered = threading.Event()  # the broker answered a CONNECT, yes or no
        self.refusal: str | None = None  # why it said no, last time
        self.generation = 0

    def accepted(self, client: mqtt.Client, rc: Any) -> bool:
        """At on_connect: did the broker accept? No: counted, and why kept for
        :func:`open_connection`'s message. Yes: Nagle off, a new generation; the client
        then does what it does at each connection and calls :meth:`up`."""
        if rc.is_failure:
            self.counters["connect_refused"] += 1
            self.refusal = str(rc)
            self.answered.set()
            if self.generation:  # at start, open_connection says it once, with what to check
                log.error("broker refused the %s: %s", self.who, rc)
            return False
        nodelay(client)
        self.generation += 1
        return True

    def up(self) -> None:
        self.connected.set()
        self.answered.set()
        if self.generation > 1:
            log.warning("%s reconnected to the broker", self.who)

    def lost(self, rc: Any, *, stopping: bool) -> bool:
        """At on_disconnect: False when the client disconnected itself, as asked; else
        counted, and True."""
        self.connected.clear()
        if stopping and not rc.is_failure:
            return False
        self.counters["disconnects"] += 1
        return True


def new_client(settings: Settings, client_id: str, *, persistent: bool,
               manual_ack: bool = False, queue_limit: int = 0) -> mqtt.Client:
    """A paho client for ``client_id`` that logs in with HUB_MQTT_USERNAME/PASSWORD, speaks
    TLS to an external broker when the settings say so, and reconnects by itself (1-5 s).

    ``persistent``: on MQTT 3.1.1, a session the broker keeps while the client is away
    (MQTT 5 asks for it at CONNECT, see :func:`open_connection`). QoS 1 messages published
    while the broker is away wait in memory for the next connection, at most
    ``queue_limit`` of them (0: no limit).
    """
    mqtt5 = settings.mqtt_protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
        clean_session=None if mqtt5 else not persistent,
        manual_ack=manual_ack,
    )
    if settings.mqtt_username:
        client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
    if settings.bridge_tls:
        # An external broker across a network: the POS's PINs pass through the bridge.
        # The broker's name is checked against its certificate, as paho does by default.
        client.tls_set(ca_certs=None if settings.mqtt_tls_ca is None else str(settings.mqtt_tls_ca))
    client.max_queued_messages_set(queue_limit)
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    return client


def open_connection(client: mqtt.Client, settings: Settings, link: Link, *, timeout: float,
                    properties: Properties | None = None,
                    clean_start: mqtt.CleanStartOption = mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                    ) -> None:
    """Connect and start paho's network thread; once connected, paho reconnects by itself.

    Should the broker be out of reach, or refuse ``link.who``, within ``timeout``:
    :class:`hub.broker_errors.BrokerUnreachable`, with what to check, and the network
    thread stopped.
    """
    host, port = settings.mqtt_address
    tls, external = settings.bridge_tls, not settings.embedded_broker
    where = broker_errors.address(host, port, tls=tls)
    try:
        if settings.mqtt_protocol == "5":
            client.connect(host, port, keepalive=settings.mqtt_keepalive,
                           clean_start=clean_start, properties=properties)
        else:
            client.connect(host, port, keepalive=settings.mqtt_keepalive)
    except OSError as exc:  # refused, no such host, no answer, TLS
        raise broker_errors.BrokerUnreachable(
            where, broker_errors.connect_problem(exc, port=port, tls=tls),
            external=external) from exc
    client.loop_start()
    if not link.answered.wait(timeout) or not link.connected.wait(0.5):
        client.loop_stop()
        reason, who = link.refusal, link.who
        raise broker_errors.BrokerUnreachable(
            where, broker_errors.login_problem(reason, external=external, who=who)
            if reason else f"no answer to the {who}'s CONNECT within {timeout:g}s",
            external=external)
