"""How the hub's processes log: rich text on a terminal, or one JSON object a line.

JSON (``HUB_LOG_FORMAT=json`` / ``log_format = "json"``) is for journald and log
shippers: every record is one line with ``ts`` (UTC, ISO 8601), ``level``,
``logger``, ``message``, the record's extras (``log.info(..., extra={"device_id": d})``)
and ``exc`` when an exception is attached. A line never breaks, whatever the message.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.logging import RichHandler

from hub.config import Settings

# What every LogRecord carries; anything else on a record came in through ``extra``.
# uvicorn's color_message is its message again, with terminal colour codes.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}
QUIET = ("amqtt", "transitions")  # chatty at INFO about their own state machines


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra JSON cannot hold (a Path, a datetime) is still logged.
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure_logging(settings: Settings, *, console: Console | None = None) -> None:
    """Set up the root logger of this process as ``settings`` say (level and format)."""
    handler: logging.Handler
    if settings.log_format == "json":
        handler = logging.StreamHandler()  # stderr, as the text format
        handler.setFormatter(JsonFormatter())
    else:
        handler = RichHandler(console=console, show_path=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    _uvicorn_formatters(json_lines=settings.log_format == "json")


def _uvicorn_formatters(*, json_lines: bool) -> None:
    """Make the REST API server's own lines ("Uvicorn running on ...") JSON as well.

    uvicorn gives its loggers handlers of their own from ``uvicorn.config.LOGGING_CONFIG``
    when the server is built (they do not reach the root logger); its formatters are
    uvicorn's documented point of change, and editing them here leaves the server's
    construction (hub/server.py) alone.
    """
    from uvicorn.config import LOGGING_CONFIG

    formatters: dict[str, dict[str, Any]] = LOGGING_CONFIG["formatters"]
    for name in ("default", "access"):
        if json_lines:
            formatters[name] = {"()": f"{__name__}.JsonFormatter"}
        elif formatters[name].get("()") == f"{__name__}.JsonFormatter":
            formatters[name] = dict(_UVICORN_TEXT[name])


# uvicorn's own formatters, restored when a process goes back to text (tests).
_UVICORN_TEXT: dict[str, dict[str, Any]] = {}


def _remember_uvicorn_text() -> None:
    from uvicorn.config import LOGGING_CONFIG

    for name in ("default", "access"):
        _UVICORN_TEXT[name] = dict(LOGGING_CONFIG["formatters"][name])


_remember_uvicorn_text()
