"""An online backup of the hub's SQLite database, consistent while the hub runs.

SQLite's backup API copies the database page by page inside read transactions, so
the hub keeps deciding taps meanwhile (WAL mode: readers never block the writer);
the copy is one consistent moment of the database. PostgreSQL has pg_dump for this.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url


class BackupError(ValueError):
    """The backup cannot be made: not SQLite, no database, or the target exists."""


def sqlite_path(database_url: str) -> Path:
    """The file of a ``sqlite:///`` URL; a BackupError for any other database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise BackupError(f"{url.get_backend_name()}: back it up with pg_dump (see the README)")
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory database has nothing to back up")
    return Path(url.database)


def backup_sqlite(source: Path, target: Path, *, pages_per_step: int = 1024) -> int:
    """Copy the database at ``source`` to the new file ``target``; its size in bytes.

    Steps of ``pages_per_step`` pages let the hub write between them; a write during the
    copy makes SQLite restart it, so the result is always one consistent moment.
    """
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    if os.path.lexists(target):  # a dangling symlink too: it would be written through
        raise BackupError(f"{target} exists: a backup never overwrites")
    if not target.parent.is_dir():
        raise BackupError(f"no directory {target.parent} to write {target.name} in")
    # Its own name: neither a leftover of a killed backup nor a concurrent one's file.
    partial = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    # Read-only and by URI: a backup must never create or change the hub's database.
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # guests' data
        os.close(fd)
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst, pages=pages_per_step)
            check = dst.execute("PRAGMA integrity_check").fetchone()
            if check != ("ok",):
                raise BackupError(f"the copy fails its integrity check: {check}")
        finally:
            dst.close()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    try:
        # A link, not a rename: the target appears whole or not at all, and a file that
        # appeared there during the copy is not overwritten.
        os.link(partial, target)
    except FileExistsError:
        raise BackupError(f"{target} appeared during the backup: a backup never "
                          f"overwrites") from None
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size
