"""Fixtures that run the real thing on loopback: the hub, Mosquitto, PostgreSQL."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from hub.config import Settings
from hub.db import create_db_engine, session_scope
from hub.models import utcnow
from hub.security import issue_api_token
from hub.server import Hub
from hub.store import staff
from tests.utils import leaks, postgres

# Tests start many hubs at once, as do colleagues' runs on the same machine: none takes the
# broker's fixed TLS port (8883) unless a test gives it a free one. In the environment, so
# `hub up` run as a subprocess inherits it too.
os.environ.setdefault("HUB_MQTT_TLS_PORT", "0")

# In CI the real broker and database must be there: a missing one fails instead of skipping.
REQUIRE_REAL = os.environ.get("CI") == "true" or os.environ.get("HUB_TEST_REQUIRE_REAL") == "1"


def _port_pool() -> Iterator[int]:
    """Ports below the kernel's ephemeral range, a block per pytest-xdist worker.

    A port the kernel hands out for ``bind(0)`` is in the ephemeral range, where it can be
    handed out again at once: to the other worker's ``free_port()`` or as the source port
    of any outgoing connection. Two workers then start servers on the same port (seen in
    CI). Below that range, in a block of its own, only this worker hands the port out.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    worker = int("".join(ch for ch in os.environ.get("PYTEST_XDIST_WORKER", "") if ch.isdigit())
                 or 0)
    block = 2000
    first = max(1024, low - 8 * block) + (worker % 8) * block
    # Another run of the suite on the same machine starts elsewhere in the block.
    start = random.randrange(block)
    while True:
        for offset in range(block):
            yield first + (start + offset) % block


_PORTS = _port_pool()
_PORTS_LOCK = threading.Lock()


def free_port() -> int:
    """A TCP port nobody listens on right now, and that no other test of this run gets."""
    with _PORTS_LOCK:
        for _ in range(2000):
            port = next(_PORTS)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port in this test worker's block")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something listens on for the whole test."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def missing(what: str) -> None:
    if REQUIRE_REAL:
        pytest.fail(f"{what} is required here (CI) but missing")
    pytest.skip(f"{what} not installed")


def hub_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "hub", "mqtt_port": free_port(), "http_port": free_port(),
        "mqtt_client_id": f"test-bridge-{free_port()}", "log_level": "WARNING",
        # Tests that play devices anonymously run an open broker; the closed one (the
        # default) is tested where it is asked for (secure_broker=True, tests/e2e/test_cli).
        "secure_broker": False,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------ API tokens


def bearer(token: str) -> dict[str, str]:
    """The header that carries an API token."""
    return {"Authorization": f"Bearer {token}"}


def staff_token(app: FastAPI, *roles: str, username: str | None = None) -> str:
    """A token of a staff user holding ``roles`` (admin by default) for ``app``.

    The user is created when missing, with a hash no password matches: tests mint
    tokens with the app's key instead of paying for argon2 at every login.
    """
    roles = roles or ("admin",)
    username = username or "test-" + "-".join(sorted(roles))
    with session_scope(app.state.engine) as session:
        if staff.find_staff_user(session=session, username=username) is None:
            staff.add_staff_user(session=session, username=username, password_hash="!", roles=roles,
                                 now=utcnow())
    return issue_api_token(app.state.token_key, subject=username, roles=roles, typ="staff",
                           minutes=60, now=utcnow()).token


def guest_token(app: FastAPI, guest_id: str) -> str:
    """A guest's token for ``app``, as POST /guests/{id}/token hands out."""
    return issue_api_token(app.state.token_key, subject=guest_id, roles=["guest"], typ="guest",
                           minutes=60, now=utcnow()).token


def login(api: str, username: str = "admin", password: str = "demo-admin") -> dict[str, str]:
    """Log in to a running hub's REST API (``api`` ends in /api/v1): the bearer header."""
    response = httpx.post(f"{api}/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


STACKS = ["embedded", pytest.param("mosquitto+postgres",
                                   marks=[pytest.mark.mosquitto, pytest.mark.postgres])]


def stack_settings(tmp_path: Path, request: pytest.FixtureRequest, stack: str,
                   **overrides: object) -> Settings:
    """``hub_settings`` for ``stack``: "embedded" or "mosquitto+postgres"."""
    if stack == "mosquitto+postgres":
        port = request.getfixturevalue("mosquitto")
        engine = fresh_postgres(request.getfixturevalue("postgres_url"))
        url = engine.url.render_as_string(hide_password=False)
        engine.dispose()
        # A group of its own: a stopped hub's persistent session must not be handed taps.
        overrides = {"broker_url": f"mqtt://127.0.0.1:{port}", "mqtt_protocol": "5",
                     "mqtt_shared_group": f"t{uuid.uuid4().hex[:10]}", "database_url": url,
                     **overrides}
    return hub_settings(tmp_path, **overrides)


@pytest.fixture(params=STACKS)
def running_hub(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Hub]:
    """A demo hub in this process, bridge and HTTP on free ports: on the embedded defaults
    (embedded broker, SQLite), or on the production stack (the session's Mosquitto, MQTT 5
    with a shared subscription, and a new PostgreSQL database)."""
    hub = Hub(stack_settings(tmp_path, request, getattr(request, "param", "embedded")),
              demo=True)
    hub.start()
    hub.serve_in_thread()
    yield hub
    hub.stop()


# ------------------------------------------------------------------ Mosquitto


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real Mosquitto on a free loopback port, configured as the README advises."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                           if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        missing("mosquitto")
    port = free_port()
    conf = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
        "max_queued_messages 0\nmax_inflight_messages 0\npersistence false\n"
    )
    proc = subprocess.Popen([str(binary), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def secured_mosquitto(binary: str, root: Path, port: int) -> Iterator[None]:
    """A Mosquitto on ``port`` checking ``root/passwd`` and ``root/acl``; no anonymous."""
    for name in ("passwd", "acl"):
        (root / name).chmod(0o600)
    # Started as root, Mosquitto drops to its own user before reading these files, and
    # pytest's temp dir is private to us: keep root (only when we are root, in tests).
    stay = "user root\n" if os.geteuid() == 0 else ""
    (root / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\nper_listener_settings false\n"
        f"password_file {root / 'passwd'}\nacl_file {root / 'acl'}\n{stay}"
        "set_tcp_nodelay true\npersistence false\nlog_dest stderr\n"
    )
    with open(root / "log", "wb") as log:
        proc = subprocess.Popen([binary, "-c", str(root / "mosquitto.conf")],
                                stdout=log, stderr=log)
    try:
        try:
            wait_port(port)
        except TimeoutError:
            raise AssertionError((root / "log").read_text()) from None
        yield
    finally:
        proc.terminate()
        proc.wait(10)


# ----------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throw-away PostgreSQL cluster on a free loopback port; yields its SQLAlchemy URL."""
    if url := os.environ.get("HUB_TEST_POSTGRES_URL"):
        yield url
        return
    if not postgres.available():
        missing("PostgreSQL (initdb, pg_ctl)")
    cluster = postgres.Cluster(free_port())
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.remove()


@pytest.fixture
def own_postgres() -> Iterator[postgres.Cluster]:
    """A PostgreSQL cluster of this test's own: one it may crash and restart."""
    if not postgres.available():
        missing("PostgreSQL (initdb, pg_ctl)")
    with postgres.own_cluster(free_port()) as cluster:
        yield cluster


def fresh_postgres(server_url: str) -> Engine:
    """An engine on a new, empty database of the test cluster."""
    name = f"hub_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return create_db_engine(server_url.rsplit("/", 1)[0] + f"/{name}")


# ------------------------------------------------------------------ order

# The longest files first: pytest-xdist hands whole files (--dist loadfile) to whichever
# worker is free, in collection order, so a long file collected last keeps one worker
# busy alone at the end. Longest first, the two finish together (measured in CI's
# --durations). The order within each file is left as it is.
LONGEST_FIRST = (
    "tests/e2e/test_fleet_faults.py", "tests/e2e/test_pipeline_fuzz.py",
    "tests/hub/test_api.py", "tests/e2e/test_burst.py", "tests/e2e/test_cli.py",
    "tests/e2e/test_deployed_fleet.py", "tests/simulators/test_bench.py",
    "tests/e2e/test_pipeline_survives.py", "tests/hub/test_api_auth.py",
    "tests/e2e/test_scale_out.py", "tests/e2e/test_upgrade.py",
)


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}

    def key(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return rank.get(path, len(rank))
    items.sort(key=key)  # stable: every other file keeps its place


# ------------------------------------------------------------------ leaks

_OWNED = leaks.Owned()  # what fixtures broader than a test started: theirs until they end


def pytest_configure(config: pytest.Config) -> None:
    if leaks.supported():
        config.pluginmanager.register(leaks.FixtureWatch(_OWNED), "leaks-fixture-watch")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure() -> None:
    if leaks.supported() and (left := leaks.end_stragglers()):
        print(f"killed child processes left running: {left}", file=sys.stderr)


@pytest.fixture(autouse=True)
def _test_leaves_no_process(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test's processes end with it (a failed hub start must stop what it started)."""
    if not leaks.supported():
        yield
        return
    before = leaks.Snapshot.take(_OWNED, "function")
    yield
    if left := before.left_children(request.node.nodeid):
        pytest.fail(left, pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def _module_leaves_nothing(request: pytest.FixtureRequest) -> Iterator[None]:
    """A module's processes end with it, and it closes what it opens (give or take a few)."""
    if not leaks.supported():
        yield
        return
    before = leaks.Snapshot.take(_OWNED, "module")
    yield
    where = request.node.nodeid
    if left := [said for said in (before.left_children(where), before.left_fds(where)) if said]:
        pytest.fail("; ".join(left), pytrace=False)
