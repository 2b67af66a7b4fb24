"""The deployment topology as processes, for tests: a Mosquitto as deployed, ``hub worker``
and ``hub api`` each in a process of its own, as systemd would run them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hub.config import Settings
from hub.db import init_db
from hub.demo import seed_demo
from hub.models import utcnow
from hub.phone_keys import ensure_signing_keys
from hub.secrets import load_or_create
from tests.conftest import free_port, fresh_postgres, wait_port

HUB = [sys.executable, "-c", "from hub.cli import app; app()"]


def demo_database(root: Path, server_url: str) -> str:
    """A new database on ``server_url`` with the demo venue, and the secrets every process
    of the fleet shares (as a deployment copies them to each) under ``root/hub``: made
    once, not raced. Returns the database's URL."""
    engine = fresh_postgres(server_url)
    url = engine.url.render_as_string(hide_password=False)
    init_db(engine)
    seed_demo(engine, utcnow())
    engine.dispose()
    data = root / "hub"
    load_or_create(data)
    settings = Settings(data_dir=data)
    ensure_signing_keys(data, utcnow(), rotation_days=settings.phone_key_rotation_days,
                        overlap_days=settings.phone_key_overlap_days)
    return url


class Mosquitto:
    """A Mosquitto as deployed: MQTT 5, persistent sessions kept across a restart."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
            "max_queued_messages 0\nmax_inflight_messages 0\n"
            f"persistence true\npersistence_location {root}/\nautosave_interval 1\n"
            # Started as root, Mosquitto drops to its own user, who cannot write its
            # sessions into pytest's private temp dir: the restart would lose them.
            + ("user root\n" if os.geteuid() == 0 else ""))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else "mosquitto"
        with open(self.root / "log", "ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=log,
                                         stderr=log)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # saves its sessions and queues to disk
            self.proc.wait(10)
            self.proc = None


def stop(proc: subprocess.Popen[bytes] | None) -> int | None:
    """SIGTERM, as systemd stops a unit: its exit code (killed after 30 s)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


class Worker:
    """``hub worker`` in a process of its own, as systemd would run it."""

    def __init__(self, name: str, root: Path, broker: int, database_url: str,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.log, self.env = name, root / f"{name}.log", env or {}
        self.args = [*HUB, "worker",
                     "--broker", f"mqtt://127.0.0.1:{broker}", "--database-url", database_url,
                     "--data-dir", str(root / "hub"), "--name", name, "--log-level", "INFO"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, COLUMNS="200", **self.env)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, env=env)

    def wait_connected(self, times: int = 1, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.log.read_text(errors="replace").count("connected to mqtt") < times:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"{self.name} did not connect"
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        return stop(self.proc)


class Api:
    """``hub api`` in a process of its own; ``url`` is its REST API's base."""

    def __init__(self, root: Path, broker: int, database_url: str) -> None:
        self.port, self.log = free_port(), root / "api.log"
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [*HUB, "api", "--database-url", database_url, "--data-dir",
                     str(root / "hub"), "--http-port", str(self.port), "--log-level", "INFO"]
        self.env = dict(os.environ, COLUMNS="200", HUB_BROKER_URL=f"mqtt://127.0.0.1:{broker}")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, env=self.env)
        try:
            wait_port(self.port, timeout=60)
        except TimeoutError:
            raise AssertionError(self.log.read_text(errors="replace")) from None

    def stop(self) -> int | None:
        return stop(self.proc)
