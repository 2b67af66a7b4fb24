"""What the bench starts and stops: Mosquitto, ``hub up --demo``, the echo responder and,
for a fleet, ``hub api`` and ``hub worker`` processes.

Each is a context manager around a child process in its own session (a Ctrl-C at the
terminal reaches the bench alone, which then stops its children in order), logging to
a file under the run's temporary directory, stopped in ``finally`` however the run ends:
the hub with SIGINT (its orderly stop: it answers what it took), the others with
SIGTERM, anything still there after a timeout with SIGKILL.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from simulators.echo import READY

# Where and what the hub runs is the bench's to say; other HUB_* settings (batch size,
# deadline, SQLite durability...) pass through, so they can be benched, and are reported.
_PLACEMENT = ("HUB_DATA_DIR", "HUB_DATABASE_URL", "HUB_BROKER_URL", "HUB_MQTT_", "HUB_HTTP_",
              "HUB_SECURE_BROKER", "HUB_API_AUTH", "HUB_WORKER_NAME")
MOSQUITTO_CONF = ("listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
                  "max_queued_messages 0\nmax_inflight_messages 0\npersistence false\n")


class StartError(RuntimeError):
    """Something the bench starts did not come up."""


@dataclass(slots=True)
class Spawned:
    """A child process of the bench, as the report shows it."""

    what: str
    pid: int
    ports: list[int]
    log: Path
    returncode: int | None = None
    cpu_s: float | None = None  # CPU seconds it used (user + system), taken as it was stopped
    extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = field(default=None, repr=False, compare=False)

    def exited(self) -> int | None:
        """Its exit code if it has ended (by itself: the bench stops it only at the end)."""
        return None if self.proc is None else self.proc.poll()

    def report(self) -> dict[str, object]:
        return {"what": self.what, "pid": self.pid, "ports": self.ports,
                "returncode": self.returncode, "cpu_s": self.cpu_s, **self.extra}

    def tail(self, lines: int = 20) -> str:
        """The end of its log, for an error message."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def find_mosquitto(given: str | None = None) -> str | None:
    """The mosquitto binary: ``given``, on PATH, or Debian's /usr/sbin (not on a user's PATH)."""
    if given:
        return given if Path(given).is_file() else shutil.which(given)
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).is_file()),
        None)


def hub_executable() -> str:
    """The ``hub`` command installed beside this Python (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "hub"
    if beside.is_file():
        return str(beside)
    found = shutil.which("hub")
    if found is None:
        raise StartError(f"no `hub` command beside {sys.executable} nor on PATH")
    return found


def hub_env(mqtt5: bool) -> dict[str, str]:
    """The environment the hub runs in: ours without HUB_* placement settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PLACEMENT)}
    if mqtt5:
        env["HUB_MQTT_PROTOCOL"] = "5"
    return env


def _spawn(what: str, command: list[str], log: Path, *, env: dict[str, str] | None = None,
           stdout_pipe: bool = False) -> subprocess.Popen[str]:
    with open(log, "w") as out:
        try:
            return subprocess.Popen(command, stdout=subprocess.PIPE if stdout_pipe else out,
                                    stderr=out if stdout_pipe else subprocess.STDOUT,
                                    env=env, text=True, start_new_session=True)
        except OSError as exc:
            raise StartError(f"cannot start {what} ({command[0]}): {exc}") from exc


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux /proc); None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return None


def _finish(spawned: Spawned, proc: subprocess.Popen[str], first: signal.Signals,
            timeout: float) -> None:
    """Note its CPU time, stop it, note its exit code."""
    if proc.poll() is None:
        spawned.cpu_s = cpu_seconds(proc.pid)
    spawned.returncode = _stop(proc, first, timeout)


def _stop(proc: subprocess.Popen[str], first: signal.Signals, timeout: float) -> int:
    if proc.poll() is None:
        proc.send_signal(first)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def _wait_port(proc: subprocess.Popen[str], spawned: Spawned, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if proc.poll() is not None:
            raise StartError(f"{spawned.what} exited ({proc.returncode}):\n{spawned.tail()}")
        if time.monotonic() > deadline:
            raise StartError(f"{spawned.what} did not listen on {port} in {timeout:g}s")
        time.sleep(0.05)


@contextmanager
def mosquitto(binary: str, root: Path, port: int, *,
              timeout: float = 10.0) -> Iterator[Spawned]:
    """A Mosquitto of our own on ``port``, configured as the README advises."""
    conf = root / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(port=port))
    proc = _spawn("mosquitto", [binary, "-c", str(conf)], root / "mosquitto.log")
    spawned = Spawned("mosquitto", proc.pid, [port], root / "mosquitto.log", proc=proc)
    try:
        _wait_port(proc, spawned, port, timeout)
        yield spawned
    finally:
        _finish(spawned, proc, signal.SIGTERM, 10)


@contextmanager
def hub(root: Path, *, http_port: int, mqtt_port: int | None = None,
        broker_url: str | None = None, database_url: str | None = None,
        timeout: float = 60.0) -> Iterator[Spawned]:
    """``hub up --demo`` on a fresh data dir, its own embedded broker on ``mqtt_port`` or
    MQTT 5 to ``broker_url``, on SQLite in the data dir or ``database_url``; yields once
    ``GET /api/v1/health`` answers 200."""
    command = [hub_executable(), "up", "--demo", "--data-dir", str(root / "data"),
               "--http-port", str(http_port), "--log-level", "warning"]
    ports = [http_port]
    if broker_url is not None:
        command += ["--broker", broker_url]
    else:
        assert mqtt_port is not None
        # Open, as the echo's broker is: the bench measures decisions, not logins, and
        # the devices it registers for the run have no sheet to log in from.
        command += ["--mqtt-port", str(mqtt_port), "--open-broker"]
        # No TLS listener: the bench's devices speak plain MQTT, and the default TLS port
        # (8883) is a fixed one another hub on the machine may hold.
        command += ["--mqtt-tls-port", "0"]
        ports.append(mqtt_port)
    if database_url is not None:
        command += ["--database-url", database_url]
    env = hub_env(mqtt5=broker_url is not None)
    proc = _spawn("the hub", command, root / "hub.log", env=env)
    spawned = Spawned("hub", proc.pid, ports, root / "hub.log",
                      extra={"data_dir": str(root / "data"), "command": _shown(command)},
                      proc=proc)
    try:
        _wait_healthy(proc, spawned, http_port, timeout)
        yield spawned
    finally:
        _finish(spawned, proc, signal.SIGINT, 30)


@contextmanager
def hub_api(root: Path, *, http_port: int, database_url: str, broker_url: str,
            timeout: float = 60.0) -> Iterator[Spawned]:
    """``hub api`` on the data dir a seeding ``hub up --demo`` left (its secrets sign the
    API's tokens); yields once ``GET /api/v1/health`` answers."""
    # Its broker: what the API publishes (receipts, key material) goes to the workers'.
    command = [hub_executable(), "api", "--data-dir", str(root / "data"), "--database-url",
               database_url, "--broker", broker_url, "--http-port", str(http_port),
               "--log-level", "warning"]
    proc = _spawn("hub api", command, root / "api.log", env=hub_env(False))
    spawned = Spawned("hub api", proc.pid, [http_port], root / "api.log",
                      extra={"command": _shown(command)}, proc=proc)
    try:
        _wait_healthy(proc, spawned, http_port, timeout)
        yield spawned
    finally:
        _finish(spawned, proc, signal.SIGINT, 30)


@contextmanager
def hub_worker(root: Path, *, name: str, broker_url: str, database_url: str,
               timeout: float = 60.0) -> Iterator[Spawned]:
    """``hub worker --name NAME`` in the default shared-subscription group, on the same data
    dir's secrets; yields once it says its bridge is connected (it has subscribed by then)."""
    log = root / f"worker-{name}.log"
    # Info, for the one line that says it connected; a worker logs nothing per decision.
    command = [hub_executable(), "worker", "--data-dir", str(root / "data"), "--broker",
               broker_url, "--database-url", database_url, "--name", name,
               "--log-level", "info"]
    # JSON lines: rich's text wraps a line at the terminal's width, anywhere in it.
    env = {**hub_env(True), "HUB_LOG_FORMAT": "json"}
    proc = _spawn(f"hub worker {name}", command, log, env=env)
    spawned = Spawned(f"hub worker {name}", proc.pid, [], log,
                      extra={"command": _shown(command)}, proc=proc)
    try:
        deadline = time.monotonic() + timeout
        while "connected to mqtt" not in _read(log):  # mqtt:// or mqtts://
            if proc.poll() is not None:
                raise StartError(f"hub worker {name} exited ({proc.returncode}):\n"
                                 f"{spawned.tail()}")
            if time.monotonic() > deadline:
                raise StartError(f"hub worker {name} did not connect in {timeout:g}s:\n"
                                 f"{spawned.tail()}")
            time.sleep(0.1)
        yield spawned
    finally:
        _finish(spawned, proc, signal.SIGINT, 30)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _shown(command: list[str]) -> str:
    """A command line for the report, without a database password."""
    return " ".join(redact_url(part) if "://" in part else part for part in command)


def redact_url(url: str) -> str:
    """``scheme://user:secret@host/db`` -> ``scheme://user:***@host/db``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _wait_healthy(proc: subprocess.Popen[str], spawned: Spawned, http_port: int,
                  timeout: float) -> None:
    health = f"http://127.0.0.1:{http_port}/api/v1/health"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise StartError(f"{spawned.what} exited ({proc.returncode}):\n{spawned.tail()}")
        try:
            if httpx.get(health, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise StartError(f"{spawned.what} was not healthy at {health} in {timeout:g}s:\n"
                             f"{spawned.tail()}")
        time.sleep(0.1)


@contextmanager
def echo(root: Path, host: str, port: int, *, mqtt5: bool,
         timeout: float = 15.0) -> Iterator[Spawned]:
    """The echo responder (``python -m simulators.echo``); yields once it has subscribed."""
    command = [sys.executable, "-m", "simulators.echo", "--host", host, "--port", str(port)]
    if mqtt5:
        command.append("--mqtt5")
    proc = _spawn("the echo", command, root / "echo.log", stdout_pipe=True)
    spawned = Spawned("echo", proc.pid, [], root / "echo.log", proc=proc)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline().strip() if ready else ""
        if line != READY:
            proc.poll()
            raise StartError(f"the echo did not subscribe in {timeout:g}s "
                             f"(exit {proc.returncode}):\n{spawned.tail()}")
        yield spawned
    finally:
        _finish(spawned, proc, signal.SIGTERM, 10)
        if proc.stdout is not None:
            proc.stdout.close()
