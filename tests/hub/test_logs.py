"""HUB_LOG_FORMAT=json: one JSON object a line, with ts, level, logger, message, extras."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.config import Settings
from hub.logs import JsonFormatter, configure_logging


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("hub.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_line_of_json_with_its_extras(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    before = datetime.now(UTC)
    logger.warning("tap from %s\nrefused", "door-1",
                   extra={"device_id": "door-1", "amount": 1250, "where": Path("/x")})
    [line] = _lines(stream)
    assert line["level"] == "WARNING" and line["logger"] == "hub.test_logs"
    assert line["message"] == "tap from door-1\nrefused"  # the newline stays inside the line
    assert line["device_id"] == "door-1" and line["amount"] == 1250 and line["where"] == "/x"
    ts = datetime.fromisoformat(str(line["ts"]))
    assert ts.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= ts <= datetime.now(UTC)
    assert "args" not in line and "levelno" not in line  # LogRecord's own fields stay out


def test_an_exception_travels_in_the_same_line(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise RuntimeError("broker gone")
    except RuntimeError:
        logger.exception("bridge stopped")
    [line] = _lines(stream)
    assert line["message"] == "bridge stopped" and line["level"] == "ERROR"
    assert "RuntimeError: broker gone" in str(line["exc"])


def test_configure_logging_json_writes_json_to_stderr(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # basicConfig configures an unconfigured root
    monkeypatch.setattr(root, "level", root.level)
    configure_logging(Settings(log_format="json", log_level="INFO"))
    logging.getLogger("hub.bridge").info("connected", extra={"broker": "mqtt://b:1883"})
    logging.getLogger("amqtt").info("chatter")  # quietened below WARNING
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["logger"], line["message"], line.get("broker")) for line in lines] == [
        ("hub.bridge", "connected", "mqtt://b:1883")]


def test_the_api_servers_own_lines_are_json_too(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", list(logger.handlers))
        monkeypatch.setattr(logger, "propagate", logger.propagate)
        monkeypatch.setattr(logger, "level", logger.level)
    try:
        configure_logging(Settings(log_format="json", log_level="INFO"))
        uvicorn.Config(app=lambda: None, log_level="info")  # configures uvicorn's loggers
        logging.getLogger("uvicorn.error").info("Uvicorn running on %s", "http://h:8000",
                                                extra={"color_message": "\x1b[1m%s\x1b[0m"})
        [line] = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert line == {"ts": line["ts"], "level": "INFO", "logger": "uvicorn.error",
                        "message": "Uvicorn running on http://h:8000"}
    finally:
        configure_logging(Settings(log_format="text", log_level="INFO"))
    from uvicorn.config import LOGGING_CONFIG
    assert LOGGING_CONFIG["formatters"]["default"]["()"] == "uvicorn.logging.DefaultFormatter"


def test_a_failed_start_is_a_json_line_too(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import free_port

    dead = free_port()  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-c", "from hub.cli import app; app()", "worker", "--broker",
         f"mqtt://127.0.0.1:{dead}", "--database-url", f"sqlite:///{tmp_path / 'hub.db'}",
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HUB_LOG_FORMAT": "json", "COLUMNS": "60"})
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line: journald's jq reads it
    failed = [r for r in records if r["level"] == "ERROR"]
    assert failed and failed[-1]["message"].startswith("cannot start: "), records
    assert str(dead) in failed[-1]["message"]


def test_a_database_down_at_start_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import free_port

    done = subprocess.run(
        [sys.executable, "-c", "from hub.cli import app; app()", "worker", "--broker",
         "mqtt://127.0.0.1:1", "--database-url",
         f"postgresql+psycopg://hub:pw@127.0.0.1:{free_port()}/hub",
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HUB_LOG_FORMAT": "json", "COLUMNS": "60"})
    assert done.returncode == 1, done.stdout + done.stderr
    records = [json.loads(line) for line in (done.stdout + done.stderr).splitlines()
               if line.strip()]
    assert [r["message"] for r in records if r["level"] == "ERROR"][-1].startswith(
        "cannot start: the database is out of reach: OperationalError"), records
    assert "Traceback" not in done.stdout + done.stderr and "pw@" not in done.stderr
