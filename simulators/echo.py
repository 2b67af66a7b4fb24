"""A bare MQTT echo responder: the baseline ``hub-sim bench`` measures the hub against.

It answers every message on ``bench/echo/{device}/events`` with ``{"event_id": ...}`` on
``bench/echo/{device}/replies``, QoS 1 both ways, with the client library the hub uses
(paho-mqtt) and the same socket options. It parses the JSON it gets, so it does the least
work a responder can do, and nothing more: what the hub adds on top of it (validation,
the decision, the database, the automations) is what the bench shows.

Its topics lie outside ``venuehub/v1/...``, so a hub on the same broker never sees them.
Run as ``python -m simulators.echo --host H --port P [--mqtt5]``, in its own process like
the hub; it prints ``ready`` once subscribed and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.client import nodelay

PREFIX = "bench/echo"
READY = "ready"


def events_topic(device_id: str) -> str:
    """Where the bench publishes a device's messages for the echo."""
    return f"{PREFIX}/{device_id}/events"


def replies_topic(device_id: str) -> str:
    """Where the echo answers a device."""
    return f"{PREFIX}/{device_id}/replies"


def reply_for(topic: str, payload: bytes) -> tuple[str, bytes] | None:
    """The echo's answer to one message: (topic, payload), or None for one it cannot read."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[3] != "events":
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return replies_topic(parts[2]), json.dumps({"event_id": data.get("event_id")}).encode()


def serve(host: str, port: int, *, mqtt5: bool, stop: threading.Event) -> None:
    """Answer until ``stop`` is set; print READY on stdout once subscribed."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"bench-echo-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311)
    # No client-side window: the replies leave as fast as the broker takes them.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            return
        nodelay(c)
        c.subscribe(events_topic("+"), qos=1)

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: Any, _rc: Any, _p: Any = None) -> None:
        print(READY, flush=True)

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        answer = reply_for(msg.topic, bytes(msg.payload))
        if answer is not None:
            c.publish(answer[0], answer[1], qos=1)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(host, port)
    client.loop_start()
    try:
        stop.wait()
    finally:
        client.disconnect()
        client.loop_stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.echo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--mqtt5", action="store_true", help="MQTT 5 instead of 3.1.1")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _s, _f: stop.set())
    try:
        serve(args.host, args.port, mqtt5=args.mqtt5, stop=stop)
    except OSError as exc:
        print(f"echo: cannot reach mqtt://{args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
