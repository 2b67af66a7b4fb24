"""The bridge without a broker: batching, a savepoint per message, publish after commit,
ack after publish (the order a device can rely on: what it is told is durable, and a
message the broker was told is done has been answered)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devices.contract import (
    ErrorCode,
    HeartbeatEvent,
    TapEvent,
    TelemetryEvent,
    WristbandCredential,
    encode,
)
from devices.topics import Channel, device_topic
from hub.bridge import Bridge
from hub.config import Settings
from hub.db import create_db_engine, init_db
from hub.demo import VENUE_ID, seed_demo, wristband_uid
from hub.models import DeadLetter, Device, Event, Telemetry, utcnow
from tests.utils.bridge import OfflineBridge, Step

GATE = device_topic(VENUE_ID, "gate-park-in-1", Channel.EVENTS)
THERMOSTAT = "thermostat-101"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bridge") / "hub.db"
    engine = create_db_engine(f"sqlite:///{path}")
    init_db(engine)
    seed_demo(engine, utcnow())
    engine.dispose()
    return path


@pytest.fixture
def engine(tmp_path: Path, template: Path) -> Iterator[Engine]:
    path = tmp_path / "hub.db"
    path.write_bytes(template.read_bytes())
    engine = create_db_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def offline(engine: Engine, tmp_path: Path, **settings: Any) -> OfflineBridge:
    # No time budget or deadline cuts a batch short here: a loaded machine is no reason.
    values: dict[str, Any] = {"bridge_batch_ms": 10_000, "tap_deadline_ms": 60_000,
                              **settings}
    return OfflineBridge(Bridge(Settings(data_dir=tmp_path, broker_url=None, **values), engine),
                         engine)


@pytest.fixture
def hub(engine: Engine, tmp_path: Path) -> Iterator[OfflineBridge]:
    running = offline(engine, tmp_path)
    yield running
    running.close()


def tap(event_id: str, guest: int) -> bytes:
    return encode(TapEvent(event_id=event_id, ts=utcnow(),
                           credential=WristbandCredential(uid=wristband_uid(guest))))


def reading(event_id: str) -> bytes:
    return encode(TelemetryEvent(event_id=event_id, ts=utcnow(),
                                 readings={"temperature_c": 21.5}))


def thermostat() -> str:
    return device_topic(VENUE_ID, THERMOSTAT, Channel.EVENTS)


# ------------------------------------------------------------------ order


def test_a_batch_is_one_commit_then_each_reply_then_its_ack(hub: OfflineBridge) -> None:
    mids = [hub.inject(GATE, tap(f"t-{n}", n)) for n in (1, 2, 3)]
    hub.run_batch()
    assert hub.timeline == [
        Step("commit"),
        Step("publish", "t-1"), Step("ack", str(mids[0])),
        Step("publish", "t-2"), Step("ack", str(mids[1])),
        Step("publish", "t-3"), Step("ack", str(mids[2])),
    ]
    replies = hub.replies()
    assert [(replies[f"t-{n}"]["outcome"], replies[f"t-{n}"]["reason"]) for n in (1, 2, 3)] \
        == [("allow", "ok")] * 3
    assert hub.bridge.snapshot()["batches"] == 1 and hub.bridge.queue_depth == 0


def test_a_batch_takes_no_more_than_the_batch_size(engine: Engine, tmp_path: Path) -> None:
    hub = offline(engine, tmp_path, bridge_batch_size=2)
    try:
        mids = [hub.inject(GATE, tap(f"t-{n}", n)) for n in (1, 2, 3)]
        hub.run_batch()
        assert hub.timeline == [Step("commit"), Step("publish", "t-1"), Step("ack", str(mids[0])),
                                Step("publish", "t-2"), Step("ack", str(mids[1]))]
        assert hub.bridge.queue_depth == 1  # the third waits for the next turn
        hub.run_batch()
        assert hub.timeline[5:] == [Step("commit"), Step("publish", "t-3"),
                                    Step("ack", str(mids[2]))]
    finally:
        hub.close()


def test_every_reply_is_already_durable_when_it_is_published(
        hub: OfflineBridge, engine: Engine) -> None:
    """Read from another connection at the moment of each publish: the decision is there."""
    seen: list[tuple[str, bool]] = []

    def durable(_topic: str, body: dict[str, Any]) -> None:
        with Session(engine) as other:
            row = other.exec(select(Event).where(Event.event_id == body["event_id"])).first()
        seen.append((body["event_id"], row is not None and row.outcome == body["outcome"]))

    hub.client.on_publish.append(durable)
    for n in (1, 2):
        hub.inject(GATE, tap(f"t-{n}", n))
    hub.run_batch()
    assert seen == [("t-1", True), ("t-2", True)]


def test_a_qos_0_message_is_answered_and_not_acked(hub: OfflineBridge) -> None:
    hub.inject(GATE, tap("t-1", 1), qos=0)
    mid = hub.inject(GATE, tap("t-2", 2))
    hub.run_batch()
    assert hub.timeline == [Step("commit"), Step("publish", "t-1"),
                            Step("publish", "t-2"), Step("ack", str(mid))]


def test_a_reply_that_cannot_be_published_still_lets_its_message_be_acked(
        hub: OfflineBridge) -> None:
    """paho refusing a publish (the broker gone) must not stop the acks of the batch: the
    decision is recorded and a redelivery replays it."""
    def gone(_topic: str, body: dict[str, Any]) -> None:
        if body.get("event_id") == "t-1":
            raise OSError("the broker went away")

    hub.client.on_publish.append(gone)
    mids = [hub.inject(GATE, tap(f"t-{n}", n)) for n in (1, 2)]
    hub.run_batch()
    assert hub.timeline == [Step("commit"), Step("ack", str(mids[0])),
                            Step("publish", "t-2"), Step("ack", str(mids[1]))]


def test_a_refused_message_is_answered_on_its_errors_topic_after_the_commit(
        hub: OfflineBridge) -> None:
    mid_bad = hub.inject(GATE, b'{"v": 1, "kind": "tap", "event_id": "bad-1"}')
    mid_good = hub.inject(GATE, tap("t-1", 1))
    hub.run_batch()
    assert hub.timeline == [Step("commit"), Step("publish", "bad-1"), Step("ack", str(mid_bad)),
                            Step("publish", "t-1"), Step("ack", str(mid_good))]
    topic, body = hub.client.published[0]
    assert topic == device_topic(VENUE_ID, "gate-park-in-1", Channel.ERRORS)
    assert body["code"] == ErrorCode.SCHEMA_VIOLATION


# ------------------------------------------------------------ one bad message


def test_a_message_failing_midway_is_undone_alone_and_its_batch_commits(
        hub: OfflineBridge, engine: Engine) -> None:
    """The second of three readings fails in the database after its first write (a trigger
    on the device's health update, once its own reading is in): its savepoint undoes that
    reading, it is dead-lettered and answered ``internal``, and its neighbours are
    recorded in the same, single commit."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TRIGGER poison BEFORE UPDATE ON {Device.__tablename__} "
            f"WHEN EXISTS (SELECT 1 FROM {Telemetry.__tablename__} "
            f"WHERE event_id LIKE 'poison%') "
            "BEGIN SELECT RAISE(ABORT, 'poisoned for the test'); END")
    hub.timeline.clear()
    mids = [hub.inject(thermostat(), reading(event_id))
            for event_id in ("good-1", "poison-2", "good-3")]
    hub.run_batch()
    assert hub.timeline == [Step("commit"), Step("ack", str(mids[0])),
                            Step("publish", "poison-2"), Step("ack", str(mids[1])),
                            Step("ack", str(mids[2]))]
    assert hub.replies()["poison-2"]["code"] == ErrorCode.INTERNAL
    snapshot = hub.bridge.snapshot()
    assert (snapshot["batches"], snapshot.get("batches_split", 0)) == (1, 0)
    with Session(engine) as s:
        kept = s.exec(select(Telemetry.event_id).where(Telemetry.device_id == THERMOSTAT)).all()
        dead = s.exec(select(DeadLetter)).all()
    assert sorted(kept) == ["good-1", "good-3"]
    assert [d.topic for d in dead] == [thermostat()]
    assert "poisoned for the test" in dead[0].error


def test_a_heartbeat_after_a_poison_in_the_same_batch_is_recorded(
        hub: OfflineBridge, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A message that raises outside the database is dead-lettered; the next one in the
    batch still updates the device it came from."""
    from hub.ingest import handle_message as real  # what the bridge calls, unpatched

    def handle(session: Any, topic: str, payload: bytes, *args: Any, **kw: Any) -> Any:
        if b"poison" in payload:
            raise RuntimeError("boom")
        return real(session, topic, payload, *args, **kw)

    monkeypatch.setattr("hub.bridge.handle_message", handle)
    at = datetime(2026, 1, 1, 12, tzinfo=UTC)
    hub.bridge.clock = lambda: at
    hub.inject(thermostat(), reading("poison-1"))
    hub.inject(thermostat(), encode(HeartbeatEvent(event_id="hb-1", ts=at - timedelta(seconds=1),
                                                   battery_pct=55)))
    hub.run_batch()
    assert hub.timeline.count(Step("commit")) == 1
    with Session(engine) as s:
        device = s.get(Device, THERMOSTAT)
        dead = s.exec(select(DeadLetter)).all()
    assert device is not None and device.battery_pct == 55
    assert len(dead) == 1 and "boom" in dead[0].error
