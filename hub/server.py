"""``hub up``: the broker, the bridge and the REST API in one process."""

from __future__ import annotations

import logging
from collections.abc import Callable

import uvicorn

from hub.api.main import create_app
from hub.bridge import Bridge
from hub.broker import EmbeddedBroker
from hub.config import Settings
from hub.db import create_db_engine, init_db
from hub.demo import seed_demo
from hub.models import utcnow

log = logging.getLogger(__name__)


def run(settings: Settings, *, demo: bool = False,
        announce: Callable[[Settings, dict[str, object] | None], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM, then stop in order: HTTP, bridge (drained), broker."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(settings.database, sqlite_synchronous=settings.sqlite_synchronous)
    init_db(engine)
    summary = seed_demo(engine, utcnow()) if demo else None
    broker = None
    if settings.embedded_broker:
        broker = EmbeddedBroker(settings.mqtt_host, settings.mqtt_port)
        broker.start()
    bridge = Bridge(settings, engine)
    try:
        bridge.start()
        app = create_app(engine=engine, settings=settings, bridge=bridge)
        server = uvicorn.Server(uvicorn.Config(
            app, host=settings.http_host, port=settings.http_port,
            log_level=settings.log_level.lower(), access_log=False, lifespan="off"))
        if announce is not None:
            announce(settings, summary)
        server.run()
    finally:
        log.info("shutting down: draining the bridge")
        bridge.stop()
        if broker is not None:
            broker.stop()
        engine.dispose()
        log.info("hub stopped")
