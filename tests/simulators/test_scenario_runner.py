"""The scenario runner with fake readers: expectations, re-delivery, exit codes."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from rich.console import Console

from devices.client import HubError
from devices.contract import (
    Decision,
    EntryReason,
    ErrorCode,
    ErrorMessage,
    TapEvent,
    encode,
    parse_event,
    utcnow,
)
from simulators.readers import Broker, Wristband
from simulators.rest import HubApiError, HubUnreachable
from simulators.scenarios import SCENARIOS
from simulators.scenarios.runner import Run, allow, deny, play

BAND = Wristband("04A10000000001")


class FakeReader:
    """Answers each tap from a script of replies; records what was published."""

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.published: list[bytes] = []
        self._futures: dict[str, Future[Decision]] = {}

    def _answer(self, event_id: str, future: Future[Decision]) -> None:
        reply = self.replies.pop(0)
        if isinstance(reply, tuple):
            outcome, reason = reply
            future.set_result(Decision(event_id=event_id, outcome=outcome, reason=reason,
                                       text=f"{outcome} {reason}", decided_at=utcnow()))
        elif isinstance(reply, ErrorMessage):
            future.set_exception(HubError(reply))
        # None: never answer

    def send_tap(self, credential: Any, **kw: Any) -> tuple[TapEvent, Future[Decision]]:
        event = TapEvent(event_id=f"ev{len(self.published)}", ts=utcnow(), credential=credential)
        future = self.expect(event.event_id)
        self.published.append(encode(event))
        self._answer(event.event_id, future)
        return event, future

    def expect(self, event_id: str) -> Future[Decision]:
        self._futures[event_id] = Future()
        return self._futures[event_id]

    def publish_raw(self, payload: bytes) -> None:
        self.published.append(payload)
        event_id = parse_event(payload).event_id
        self._answer(event_id, self._futures[event_id])


class FakeReaders(dict[str, FakeReader]):
    broker = Broker("127.0.0.1", 1)


class FakeApi:
    def __init__(self, health_error: Exception | None = None) -> None:
        self.health_error = health_error

    def health(self) -> dict[str, str]:
        if self.health_error:
            raise self.health_error
        return {"status": "ok"}


def make_run(replies: list[Any], api: FakeApi | None = None) -> tuple[Run, FakeReader]:
    reader = FakeReader(replies)
    run = Run(api=api or FakeApi(), readers=FakeReaders(gate=reader), venue="v",  # type: ignore[arg-type]
              timeout=0.05)
    return run, reader


def test_steps_are_checked_against_the_script() -> None:
    run, _ = make_run([("allow", EntryReason.OK), ("allow", EntryReason.OK), None,
                       ErrorMessage(code=ErrorCode.INTERNAL, detail="db down", topic="t")])
    assert run.tap("in", "gate", BAND, allow()).ok
    second = run.tap("again", "gate", BAND, deny(EntryReason.ANTI_PASSBACK))
    third = run.tap("silent", "gate", BAND, allow())
    fourth = run.tap("error", "gate", BAND, allow())

    assert (second.ok, second.got) == (False, "allow ok")
    assert (third.ok, third.ms, third.got) == (False, None, "no reply in 0.05s")
    assert not fourth.ok and "internal: db down" in fourth.got
    assert [s.number for s in run.steps] == [1, 2, 3, 4]


def test_redelivery_publishes_the_same_bytes_and_wants_the_same_answer() -> None:
    run, reader = make_run([("deny", EntryReason.UNKNOWN_CREDENTIAL),
                            ("deny", EntryReason.UNKNOWN_CREDENTIAL)])
    first = run.tap("stranger", "gate", BAND, deny(EntryReason.UNKNOWN_CREDENTIAL))
    again = run.redeliver("again", "gate", first)
    assert again.ok
    assert reader.published[0] == reader.published[1]
    assert again.event is first.event


def test_redelivery_with_a_different_answer_fails() -> None:
    run, _ = make_run([("allow", EntryReason.OK), ("deny", EntryReason.ANTI_PASSBACK)])
    first = run.tap("in", "gate", BAND, allow())
    again = run.redeliver("again", "gate", first)
    assert not again.ok
    assert "first delivery got allow ok" in again.note


def test_a_failing_action_before_a_tap_fails_the_step_without_tapping() -> None:
    run, reader = make_run([("allow", EntryReason.OK)])

    def patch() -> None:
        raise HubApiError("PATCH", "/credentials/x", 404, "not found")

    step = run.tap("lost", "gate", BAND, deny(EntryReason.CREDENTIAL_LOST), before=patch)
    assert not step.ok and "404" in step.got
    assert reader.published == []


@pytest.mark.parametrize(
    ("script", "health_error", "code"),
    [
        ([("allow", EntryReason.OK)], None, 0),
        ([("deny", EntryReason.WRONG_ZONE)], None, 1),
        ([None], None, 1),
        ([("allow", EntryReason.OK)], HubUnreachable("refused"), 2),
        ([("allow", EntryReason.OK)], ConnectionRefusedError(111, "refused"), 2),
        ([("allow", EntryReason.OK)], HubApiError("GET", "/health", 500, "x"), 1),
    ],
)
def test_play_exit_codes(script: list[Any], health_error: Exception | None, code: int) -> None:
    run, _ = make_run(script, FakeApi(health_error))
    console = Console(record=True, width=120)

    def one_tap(r: Run) -> None:
        r.tap("in", "gate", BAND, allow())

    assert play("one-tap", one_tap, run, console) == code
    if code == 0:
        assert "all 1 steps as scripted" in console.export_text()


def test_a_scenario_without_steps_does_not_pass() -> None:
    run, _ = make_run([])
    assert play("empty", lambda r: None, run, Console(record=True)) == 1


def test_scenarios_are_documented() -> None:
    assert "park-day" in SCENARIOS
    for scenario in SCENARIOS.values():
        assert scenario.__doc__
