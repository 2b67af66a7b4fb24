"""A throw-away PostgreSQL cluster on loopback, which a test can also restart."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def pg_bin(name: str) -> str | None:
    """``initdb``, ``pg_ctl``...: on PATH, or in Debian's versioned directory."""
    found = shutil.which(name)
    if found:
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / name).exists():
            return str(base / name)
    return None


def available() -> bool:
    return pg_bin("initdb") is not None and pg_bin("pg_ctl") is not None


class Cluster:
    """``initdb`` + ``pg_ctl start`` in a temporary directory, trust auth for user ``hub``.

    Not under pytest's temp dir: that one is private to us, and postgres must enter it.
    """

    def __init__(self, port: int) -> None:
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        assert initdb is not None and pg_ctl is not None, "PostgreSQL is not installed"
        self.port, self._pg_ctl = port, pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="hub-pg-"))
        self.data = self.root / "data"
        # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres", str(self.root)], check=True)
            self.root.chmod(0o777)
            self._prefix = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self._prefix, initdb, "-D", str(self.data), "-U", "hub",
                        "--auth=trust", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``postgres`` database."""
        return f"postgresql+psycopg://hub@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._ctl("start", "-l", str(self.root / "log"), "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash: no checkpoint, the next start recovers from the WAL."""
        self._ctl("stop", "-m", mode, check=False)

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self._prefix, self._pg_ctl, "-D", str(self.data), "-w", *args],
                       check=check, stdout=subprocess.DEVNULL)


@contextmanager
def own_cluster(port: int) -> Iterator[Cluster]:
    """A started cluster of one test's own (one it may crash), removed afterwards."""
    cluster = Cluster(port)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
