"""``hub up``: the broker, the bridge and the REST API in one process; ``hub worker`` and
``hub api``: the bridge alone, or the API alone (publishing through a client of its own,
:mod:`hub.publisher`), of the same :class:`Hub`."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from hub import keyring, retention
from hub.api.main import create_app
from hub.automations.gather import load_facts, might_apply
from hub.automations.learner import learn_from
from hub.automations.ruleset import CachedRules
from hub.automations.runner import AutomationRunner
from hub.automations.scheduler import Scheduler
from hub.bridge import Bridge
from hub.broker import EmbeddedBroker
from hub.broker_audit import record_refusals
from hub.broker_auth import NO_CHANGES, Logins
from hub.broker_logins import LoginFollower
from hub.broker_process import BrokerProcess
from hub.config import Settings
from hub.db import check_clock, create_db_engine, init_db, session_scope
from hub.demo import seed_demo, seed_scale
from hub.heartbeat import Heartbeat
from hub.key_watch import KeyWatch
from hub.leases import Gate
from hub.models import utcnow
from hub.phone_keys import SigningKey, ensure_signing_keys, jwks
from hub.ports import check_free
from hub.presented import Trust
from hub.provisioning import (
    api_client_id,
    bridge_client_id,
    broker_auth,
    shared_group,
    write_sheet,
)
from hub.publisher import Publisher
from hub.secrets import HubSecrets, load_or_create, private_dir
from hub.security import dummy_hash
from hub.tls import TlsFiles, TlsListener, ensure_tls

log = logging.getLogger(__name__)


class Hub:
    """One hub process: start its parts in order, stop them in reverse, losing nothing."""

    def __init__(self, settings: Settings, *, demo: bool = False,
                 scale: tuple[int, int] = (0, 0), upgrade: bool = True,
                 bridge: bool = True, api: bool = True) -> None:
        if not (bridge or api):
            raise ValueError("a hub runs the bridge, the API or both")
        if api and not bridge and settings.embedded_broker:
            # What the API publishes (receipts, revoked phone keys for offline locks) must
            # reach the workers' broker: never an API that drops it all.
            raise ValueError("the API without the bridge publishes to the workers' broker: "
                             "set broker_url (HUB_BROKER_URL, --broker)")
        self.settings = settings
        self.runs_bridge, self.runs_api = bridge, api  # hub worker: no API; hub api: no bridge
        self.demo = demo
        self.upgrade = upgrade  # an older schema is upgraded at start (else SchemaError)
        self.scale = scale  # extra demo guests and park gates (hub up --scale-guests)
        self.demo_summary: dict[str, Any] | None = None
        self.secrets: HubSecrets | None = None
        self.signing_keys: list[SigningKey] = []
        self.automations: AutomationRunner | None = None
        self.retention: retention.Retention | None = None
        self.scheduler: Scheduler | None = None
        self.heartbeat: Heartbeat | None = None
        self.key_watch: KeyWatch | None = None
        self.reader: Engine | None = None  # reads of automations, never holding up writers
        self.engine: Engine | None = None
        self.broker: EmbeddedBroker | BrokerProcess | None = None
        self.tls_files: TlsFiles | None = None  # the venue CA, when the broker listens with TLS
        self.bridge: Bridge | None = None
        self.publisher: Publisher | None = None  # the API's own MQTT client, without a bridge
        self.app: FastAPI | None = None
        self._server: uvicorn.Server | None = None
        self._new_broker: Callable[[], EmbeddedBroker | BrokerProcess] | None = None
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._audit: threading.Thread | None = None
        self._logins: LoginFollower | None = None
        self._write_demo_sheet: Callable[[], None] | None = None
        self.broker_restarts = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open the database (upgrading its schema, or hub.migrate.SchemaError), seed the
        demo, start the broker and the bridge; should any of it fail, stop what did start
        (in reverse) before raising."""
        try:
            self._start()
        except BaseException:
            # Or the broker's process, the login follower, the audit thread and the
            # databases outlive a hub nobody will stop: its caller never got a hub to stop.
            self.stop(quiet=True)
            raise

    def _start(self) -> None:
        settings = self.settings
        # Every port first: fail before announcing, creating or seeding anything.
        if self.runs_api:
            check_free("http_port", settings.http_host, settings.http_port)
        if settings.embedded_broker and self.runs_bridge:
            check_free("mqtt_port", settings.mqtt_host, settings.mqtt_port)
            if settings.mqtt_tls_port:
                check_free("mqtt_tls_port", settings.mqtt_host, settings.mqtt_tls_port)
        private_dir(settings.data_dir)
        self.secrets = load_or_create(settings.data_dir)
        self.engine = create_db_engine(settings.database,
                                       sqlite_synchronous=settings.sqlite_synchronous)
        check_clock(self.engine, utcnow, settings.max_clock_skew_seconds)
        init_db(self.engine, upgrade=self.upgrade)
        self.reader = create_db_engine(settings.database, read_only=True)
        # Before the demo's sheet: it carries their public half, the locks' trust anchor.
        self.signing_keys = ensure_signing_keys(
            settings.data_dir, utcnow(), rotation_days=settings.phone_key_rotation_days,
            overlap_days=settings.phone_key_overlap_days)
        if self.demo:
            self.demo_summary = seed_demo(self.engine, utcnow())
            if any(self.scale):
                self.demo_summary["scale"] = seed_scale(
                    self.engine, utcnow(), guests=self.scale[0], devices=self.scale[1])
        if settings.embedded_broker and self.runs_bridge:
            auth = broker_auth(self.secrets)
            tls: TlsListener | None = None
            if settings.mqtt_tls_port:
                # As `hub init` does, so `hub up --demo` alone has its CA; a CA already
                # there is kept (devices trust it).
                files = ensure_tls(settings.data_dir, settings.tls_names)
                self.tls_files = files
                tls = TlsListener(settings.mqtt_tls_port, files.server_cert, files.server_key)
            # Open or not, the bridge logs in with its own password: no client that connects
            # after it can take its client id, its session or its subscriptions.
            kind = BrokerProcess if settings.broker_process else EmbeddedBroker
            if settings.secure_broker:
                self._logins = LoginFollower(self.engine, self._set_logins)
            self._new_broker = lambda: kind(
                settings.mqtt_host, settings.mqtt_port,
                auth=auth if settings.secure_broker else None,
                bridge_login=None if settings.secure_broker
                else (auth.bridge_user, auth.bridge_password),
                logins=self._logins.read() if self._logins else NO_CHANGES, tls=tls)
            self.broker = self._new_broker()
            self.broker.start()
            if self._logins is not None:
                self._logins.start()
            self._audit = threading.Thread(target=self._audit_refusals,
                                           name="hub-broker-audit", daemon=True)
            self._audit.start()
            if isinstance(self.broker, BrokerProcess):
                self._watchdog = threading.Thread(target=self._watch_broker,
                                                  name="hub-broker-watchdog", daemon=True)
                self._watchdog.start()
            settings = settings.model_copy(update={"mqtt_username": auth.bridge_user,
                                                   "mqtt_password": auth.bridge_password})
            if settings.secure_broker and self.demo:
                self._write_demo_sheet = self._demo_sheet_writer(settings)
                self._write_demo_sheet()
        if self.runs_bridge:
            self._start_bridge(settings)
        if self.runs_api:
            self._start_api(settings)
        self.key_watch = KeyWatch(settings.data_dir / "secrets" / "phone-signing-keys.json",
                                  self.signing_keys, self._keys_rotated).start()

    def _keys_rotated(self, keys: list[SigningKey]) -> None:
        """Another process rotated the signing keys: verify and sign with them from now on,
        and tell the locks (their JWKS, retained)."""
        assert self.secrets is not None
        self.signing_keys = keys
        if self.bridge is not None:
            self.bridge.trust = Trust(tag_master_key=self.secrets.tag_master_key,
                                      jwks=jwks(keys))
        if self.app is not None:
            self.app.state.signing_keys = keys
        out = self.bridge if self.bridge is not None else self.publisher
        if out is not None:
            for topic, payload in self._key_material():
                out.publish(topic, payload, retain=True)

    def _start_bridge(self, settings: Settings) -> None:
        """The bridge, and what rides on it: automations, the scheduler, retention."""
        assert self.engine is not None and self.reader is not None and self.secrets is not None
        trust = Trust(tag_master_key=self.secrets.tag_master_key, jwks=jwks(self.signing_keys))
        if settings.mqtt_client_id is None:
            settings = settings.model_copy(update={
                "mqtt_client_id": bridge_client_id(self.secrets, settings.worker_name)})
        if settings.mqtt_shared_group:
            settings = settings.model_copy(update={
                "mqtt_shared_group": shared_group(self.secrets, settings.mqtt_shared_group)})
        self.bridge = Bridge(settings, self.engine, trust=trust, reader=self.reader)
        if self.broker is not None:
            self.bridge.broker_stats = lambda: {
                "broker_refusals": dict(self.broker.refusals) if self.broker else {},
                "broker_process_restarts": self.broker_restarts}
        bridge = self.bridge
        # Read through the reader: a reload every two seconds must not take the write lock
        # the bridge's batches wait for.
        rules = CachedRules(self.reader, ttl=2.0)
        self.automations = AutomationRunner(
            self.engine, lambda topic, payload: bridge.publish(topic, payload, strict=True),
            load_facts, rules, learn=learn_from, might_apply=might_apply,
            reader=self.reader)
        self.automations.start()
        # Retention, schedules and the sweep run once across every hub on this database.
        gate = Gate(self.engine, f"{settings.worker_name}@{socket.gethostname()}:{os.getpid()}")
        self.scheduler = Scheduler(
            self.engine, self.automations.submit, rules, publish=bridge.publish,
            command_ttl=timedelta(minutes=settings.command_queue_minutes), gate=gate).start()
        self.bridge.automations = self.automations
        self.bridge.start()
        self.retention = retention.start(self.engine, days=settings.telemetry_retention_days,
                                         gate=gate)
        # For the fleet's API, which decides nothing itself: whether this worker does.
        self.heartbeat = Heartbeat(self.engine, settings.worker_name, bridge.snapshot,
                                   settings.tap_deadline_ms).start()
        for topic, payload in self._key_material():
            self.bridge.publish(topic, payload, retain=True)

    def _key_material(self) -> list[tuple[str, bytes]]:
        """Every venue's JWKS and revocation list as they are now, to publish retained: the
        locks' copy of what the database says, whoever changed it last."""
        assert self.engine is not None
        with session_scope(self.engine) as session:
            return keyring.key_material(session, self.signing_keys, utcnow())

    def _start_publisher(self, settings: Settings) -> None:
        """The API's MQTT client when no bridge runs here (hub api): it publishes the key
        material at every connection, this start's included (the API changes keys)."""
        assert self.secrets is not None
        self.publisher = Publisher(settings, api_client_id(self.secrets, settings.worker_name),
                                   retained=self._key_material)
        self.publisher.start()

    def _start_api(self, settings: Settings) -> None:
        """The REST API, publishing through the bridge when this process runs one, else
        through a publisher of its own."""
        assert self.engine is not None and self.secrets is not None
        if self.bridge is None:
            self._start_publisher(settings)
        self.app = create_app(engine=self.engine, settings=settings, bridge=self.bridge,
                              publisher=self.publisher,
                              signing_keys=self.signing_keys,
                              token_key=self.secrets.api_token_key,
                              automations=self.automations,
                              broker_key=self.secrets.broker_key, reader=self.reader)
        dummy_hash()  # now, so the first login of an unknown user costs no more than others
        if not settings.api_auth:
            log.warning("HUB_API_AUTH is off: anyone who reaches the REST API is admin")
        self._server = uvicorn.Server(uvicorn.Config(
            self.app, host=settings.http_host, port=settings.http_port,
            log_level=settings.log_level.lower(), access_log=False, lifespan="off",
            # The client's address is the TCP peer's: X-Forwarded-For from anyone on this
            # machine would otherwise choose the address log-ins are throttled and audited by.
            proxy_headers=False,
            ssl_certfile=None if settings.http_tls_cert is None else str(settings.http_tls_cert),
            ssl_keyfile=None if settings.http_tls_key is None else str(settings.http_tls_key)))

    def serve(self) -> None:
        """Serve HTTP until SIGINT/SIGTERM (uvicorn handles the signals); without the API
        (hub worker), wait for the signal, which raises SystemExit here."""
        if self._server is None:
            assert self.runs_bridge and not self.runs_api, "start() first"
            while not self._stopping.wait(3600):
                pass
            return
        self._server.run()

    def serve_in_thread(self, timeout: float = 10.0) -> None:
        """Serve HTTP from a thread, for tests and embedding; returns once it listens."""
        assert self._server is not None, "start() first"
        self._thread = threading.Thread(target=self._server.run, name="hub-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)

    def _demo_sheet_writer(self, settings: Settings) -> Callable[[], None]:
        def write() -> None:
            assert self.engine is not None and self.secrets is not None
            with session_scope(self.engine) as session:
                write_sheet(settings.data_dir / "demo-provisioning.json", session,
                            self.secrets, broker_entry(settings, self.tls_files),
                            key_anchor=jwks(self.signing_keys))
        return write

    def _set_logins(self, logins: Logins) -> None:
        if self.broker is not None:
            self.broker.set_logins(logins)
        if self._write_demo_sheet is not None:
            # The demo's sheet is what hub-sim logs in with: keep it current, so a login
            # re-issued or revoked through the API is what the next hub-sim command uses.
            self._write_demo_sheet()

    def _audit_refusals(self) -> None:
        """Write the broker's refused logins to the audit log, once a second."""
        while not self._stopping.wait(1.0):
            broker, engine = self.broker, self.engine
            if broker is None or engine is None:
                continue
            refusals = broker.take_refusals()
            try:
                record_refusals(engine, refusals, utcnow())
            except Exception:  # the database is away: they are counted in /stats all the same
                log.exception("could not audit %d refused broker logins", len(refusals))

    def _watch_broker(self) -> None:
        """Start the embedded broker's process again should it die (the bridge reconnects,
        and health says 503 meanwhile)."""
        while not self._stopping.wait(0.5):
            broker = self.broker
            if not isinstance(broker, BrokerProcess) or broker.alive or self._new_broker is None:
                continue
            self.broker_restarts += 1
            log.error("the embedded broker's process died; starting another (%d so far)",
                      self.broker_restarts)
            broker.stop(1)
            try:
                fresh = self._new_broker()
                fresh.start()
                self.broker = fresh
            except OSError:
                log.exception("the embedded broker could not start again; retrying")

    def stop(self, *, quiet: bool = False) -> None:
        """Stop HTTP, drain the bridge (every taken message answered), stop the broker;
        ``quiet``: after a failed start, say nothing of it in the log."""
        self._stopping.set()
        if self._watchdog is not None:
            # Before the broker stops: a restart under way would start one nobody stops.
            self._watchdog.join(40)
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        if self.key_watch is not None:
            self.key_watch.stop()
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.bridge is not None and self.broker is not None:
            # The embedded broker has acknowledged what devices sent it: let all of that
            # reach the bridge and be answered before the broker goes away.
            self.bridge.drain()
        if self.bridge is not None:
            self.bridge.quiesce()  # every decision taken is made, and handed to automations
        if self.automations is not None:
            # While the bridge can still publish: what automations do after the last
            # decisions goes out (or is recorded as failed), not into a closed client.
            self.automations.drain()
            self.automations.stop()
        if self._logins is not None:
            self._logins.stop()
        if self._audit is not None:
            self._audit.join(10)  # its last round may still be writing refusals
        if self.broker is not None:
            self.broker.stop()
        if self.bridge is not None:
            self.bridge.stop()
        if self.publisher is not None:
            # After HTTP: what the last requests publish still goes out.
            self.publisher.stop()
        if self.retention is not None:
            self.retention.stop()
        if self.engine is not None:
            self.engine.dispose()
        if self.reader is not None:
            self.reader.dispose()
        log.log(logging.DEBUG if quiet else logging.INFO, "hub stopped")


def broker_entry(settings: Settings, tls: TlsFiles | None) -> dict[str, Any]:
    """The provisioning sheet's "broker": where devices connect, and with TLS, how."""
    entry: dict[str, Any] = {"host": settings.mqtt_host, "port": settings.mqtt_port}
    if tls is not None:
        entry |= {"tls_port": settings.mqtt_tls_port, "ca": str(tls.ca_cert.resolve())}
    return entry


def _exit_cleanly(signum: int, _frame: object) -> None:
    raise SystemExit(0)


def run(settings: Settings, *, demo: bool = False, scale: tuple[int, int] = (0, 0),
        announce: Callable[[Settings, dict[str, Any] | None], None] | None = None,
        upgrade: bool = True, bridge: bool = True, api: bool = True) -> None:
    """Run a hub (or only its bridge, or only its API) in the foreground until SIGINT or
    SIGTERM, then stop it in order."""
    # uvicorn handles the signal, shuts HTTP down, then re-raises it to the handler it found:
    # ours turns it into a normal exit, so the finally below drains the bridge even on SIGTERM.
    signal.signal(signal.SIGINT, _exit_cleanly)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    # The bridge's worker lets go of the GIL for every SQLite call; with Python's default
    # 5 ms switch interval, another busy thread (MQTT, automations) may keep it that long
    # before the worker gets it back. Measured with hub-sim bench at 450 taps/s: p50
    # 79 ms became 39 ms, p95 381 ms became 279 ms.
    sys.setswitchinterval(0.001)
    hub = Hub(settings, demo=demo, scale=scale, upgrade=upgrade, bridge=bridge, api=api)
    hub.start()  # should it fail, it stopped what did start; the caller tells why
    try:
        if announce is not None:
            announce(settings, hub.demo_summary)
        hub.serve()
    finally:
        log.info("shutting down: draining the bridge")
        hub.stop()
