"""hub db backup: a consistent copy of the running hub's SQLite database."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hub.backup import BackupError, backup_sqlite, sqlite_path
from hub.cli import app
from tests.utils.demo_db import demo_sqlite

runner = CliRunner()


def _counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    demo_sqlite(request, tmp_path / "hub.db").dispose()
    return tmp_path / "hub.db"


def test_the_backup_is_the_database_and_the_hub_runs_on_it(database: Path,
                                                           tmp_path: Path) -> None:
    target = tmp_path / "backups" / "hub-1.db"
    target.parent.mkdir()
    result = runner.invoke(app, ["db", "backup", str(target),
                                 "--database-url", f"sqlite:///{database}"])
    assert result.exit_code == 0, result.output
    assert _counts(target) == _counts(database) and _counts(target)["guest"] > 0
    assert target.stat().st_mode & 0o077 == 0  # guests' data: the owner's only
    current = runner.invoke(app, ["db", "current", "--database-url", f"sqlite:///{target}"])
    assert current.exit_code == 0, current.output  # the schema at this hub's version


def test_writes_during_the_backup_leave_a_consistent_copy(database: Path,
                                                          tmp_path: Path) -> None:
    # A writer commits rows in pairs while the copy goes one page at a time: the copy
    # must pass the integrity check and hold whole pairs only.
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE pairs (n INTEGER)")
    stop = threading.Event()

    def write() -> None:
        with sqlite3.connect(database, timeout=10) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            n = 0
            while not stop.is_set():
                conn.executemany("INSERT INTO pairs VALUES (?)", [(n,), (n,)])
                conn.commit()
                n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        backup_sqlite(database, tmp_path / "copy.db", pages_per_step=1)
    finally:
        stop.set()
        writer.join()
    with sqlite3.connect(tmp_path / "copy.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        odd = conn.execute("SELECT n FROM pairs GROUP BY n HAVING count(*) != 2").fetchall()
        assert odd == []


def test_a_backup_never_overwrites_nor_leaves_a_partial_file(database: Path,
                                                              tmp_path: Path) -> None:
    target = tmp_path / "old.db"
    target.write_bytes(b"yesterday")
    result = runner.invoke(app, ["db", "backup", str(target),
                                 "--database-url", f"sqlite:///{database}"])
    assert result.exit_code == 2 and "exists" in result.output
    assert target.read_bytes() == b"yesterday"
    with pytest.raises(BackupError, match="no database"):
        backup_sqlite(tmp_path / "missing.db", tmp_path / "new.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.db", "old.db"] + sorted(
        p.name for p in tmp_path.iterdir() if p.name.startswith("hub.db-"))


def test_postgresql_is_pointed_to_pg_dump() -> None:
    with pytest.raises(BackupError, match="pg_dump"):
        sqlite_path("postgresql+psycopg://hub@db/hub")
    result = runner.invoke(app, ["db", "backup", "/tmp/never.db",
                                 "--database-url", "postgresql+psycopg://hub@db/hub"])
    assert result.exit_code == 2 and "pg_dump" in result.output


def test_odd_targets_are_refused_with_a_reason_not_a_traceback(database: Path,
                                                               tmp_path: Path) -> None:
    missing_dir = tmp_path / "no" / "such" / "dir" / "hub.db"
    result = runner.invoke(app, ["db", "backup", str(missing_dir),
                                 "--database-url", f"sqlite:///{database}"])
    assert result.exit_code == 2 and "no directory" in result.output, result.output
    dangling = tmp_path / "link.db"
    dangling.symlink_to(tmp_path / "elsewhere.db")
    with pytest.raises(BackupError, match="exists"):
        backup_sqlite(database, dangling)
    assert not (tmp_path / "elsewhere.db").exists()
    # A killed backup's leftover is neither in the way nor taken for ours.
    leftover = tmp_path / "new.db.partial"
    leftover.write_bytes(b"a killed backup's")
    assert backup_sqlite(database, tmp_path / "new.db") > 0
    assert leftover.read_bytes() == b"a killed backup's"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new.db")]


def test_a_target_appearing_during_the_copy_is_not_overwritten(
        database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "race.db"
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        if str(args[0]).endswith(".partial"):  # the copy begins: someone writes the target
            target.write_bytes(b"theirs")
        connection: sqlite3.Connection = real_connect(*args, **kwargs)
        return connection
    monkeypatch.setattr("hub.backup.sqlite3.connect", connect)
    with pytest.raises(BackupError, match="appeared during the backup"):
        backup_sqlite(database, target)
    assert target.read_bytes() == b"theirs"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
