"""An operator's upgrade: a demo database main at 6722e8f made (no migrations then), on
SQLite and on PostgreSQL; `hub up` refuses it and says what to run, `hub db upgrade`
upgrades it, and the upgraded hub passes the park-day scenario and keeps its ledger whole."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from hub import migrate
from hub.db import create_db_engine
from tests.conftest import free_port, fresh_postgres, login
from tests.e2e.test_cli import BIN, start_hub
from tests.utils.schemas import load_old


@pytest.fixture(params=["sqlite", "postgres"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """The 6722e8f demo database; yields the options that point `hub` at it."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    if request.param == "sqlite":
        engine = create_db_engine(f"sqlite:///{data / 'hub.db'}")
        options = ["--data-dir", str(data)]
    else:
        engine = fresh_postgres(request.getfixturevalue("postgres_url"))
        options = ["--data-dir", str(data), "--database-url",
                   engine.url.render_as_string(hide_password=False)]
    engine.dispose()
    load_old(engine)
    yield options


def hub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "hub"), *args], capture_output=True, text=True, check=False,
                          timeout=120, env={**os.environ, "COLUMNS": "400"})


def test_a_6722e8f_demo_database_upgrades_and_passes_park_day(old_database: list[str]) -> None:
    refused = hub("up", "--demo", "--http-port", str(free_port()), "--mqtt-port",
                  str(free_port()), *old_database)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "no schema version" in refused.stdout and "run `hub db upgrade`" in refused.stdout
    assert hub("db", "current", *old_database).returncode == 1

    upgraded = hub("db", "upgrade", *old_database)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert f"those of revision {migrate.BASELINE}: stamped it so" in upgraded.stdout
    assert f"upgraded the database from {migrate.BASELINE} to {migrate.head()}" in \
        upgraded.stdout
    current = hub("db", "current", *old_database)
    assert current.returncode == 0 and f"database: {migrate.head()} (current)" in current.stdout

    # `hub up --demo` adds what the demo gained since (the strict spa venue, ...) and moves
    # the old demo's tickets and stays to today.
    running = start_hub(Path(old_database[1]), *old_database[2:])
    try:
        api = f"{running.api}/api/v1"
        venues = httpx.get(f"{api}/venues", headers=login(api)).json()
        assert {v["id"] for v in venues} >= {"demo-resort", "demo-spa"}
        done = running.sim("scenario", "park-day")
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        running.proc.send_signal(signal.SIGINT)
        running.proc.wait(30)
    verified = hub("ledger", "verify", *old_database)
    assert verified.returncode == 0 and "ledger OK" in verified.stdout, verified.stdout


def test_hub_up_refuses_an_older_schema_with_no_upgrade_and_a_newer_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    engine = create_db_engine(f"sqlite:///{data / 'hub.db'}")
    with engine.begin() as conn:
        command.upgrade(migrate.config(conn), migrate.BASELINE)
    ports = ["--http-port", str(free_port()), "--mqtt-port", str(free_port())]

    refused = hub("up", "--no-upgrade", "--data-dir", str(data), *ports)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"revision {migrate.BASELINE}, older than this hub's {migrate.head()}: run `hub db " \
           "upgrade` (or start without --no-upgrade)" in refused.stdout
    assert migrate.status(engine).revision == migrate.BASELINE  # untouched

    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00dfeed0999'"))
    engine.dispose()
    for args, code in ((["up", *ports], 2), (["db", "upgrade"], 1)):
        newer = hub(*args, "--data-dir", str(data))
        assert newer.returncode == code, newer.stdout + newer.stderr
        assert "revision 'f00dfeed0999', which this hub does not know" in newer.stdout
