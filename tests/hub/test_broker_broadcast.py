"""The embedded broker's broadcast survives subscriptions changing while it delivers."""

from __future__ import annotations

import asyncio
from collections import deque
from types import SimpleNamespace
from typing import Any

from hub.broker import _Broker

TAP = "venuehub/v1/demo-resort/device/lock-101/events"


def _session(client_id: str) -> SimpleNamespace:
    return SimpleNamespace(client_id=client_id, transitions=SimpleNamespace(state="connected"),
                           clean_session=True, is_anonymous=False)


def test_a_client_subscribing_mid_broadcast_does_not_cost_the_others_the_message() -> None:
    """amqtt awaits the ACL check inside its walk of the subscriptions; a device that
    subscribes meanwhile (every reader does at connect) used to end the walk with
    "dictionary changed size during iteration", and the subscribers after that point
    (the bridge, say) never got the tap."""
    async def broadcast() -> list[str]:
        broker = _Broker({"listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:0"}},
                          "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                                      {"allow_anonymous": True}}})
        broker._subscriptions["venuehub/v1/demo-resort/device/lock-101/#"] = [
            (_session("lock-101"), 1)]
        broker._subscriptions["venuehub/v1/+/device/#"] = [(_session("bridge"), 1)]
        reached: list[str] = []

        async def acl(target: Any, topic: str, action: Any) -> bool:
            reached.append(target.client_id)
            # Another reader connects and subscribes while this check is awaited.
            broker._subscriptions[f"venuehub/v1/demo-resort/device/gate-{len(reached)}/#"] = [
                (_session(f"gate-{len(reached)}"), 1)]
            return True

        broker._topic_filtering = acl
        broker._get_handler = lambda session: None
        await broker._broadcast_queue.put({"topic": TAP, "data": b"{}",
                                           "session": _session("lock-101")})
        await broker._run_broadcast(deque())
        return reached

    assert asyncio.run(broadcast()) == ["lock-101", "bridge"]
