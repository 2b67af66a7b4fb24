"""The commands a newcomer types: `hub up --demo`, `hub-sim ...`, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devices.client import DeviceClient
from devices.contract import TapEvent, WristbandCredential, encode, utcnow
from devices.topics import Channel
from tests.conftest import free_port, login

BIN = Path(sys.executable).parent
# How long a hub may take to come up or to go down. Waits end as soon as it has, so only
# a broken hub waits them out; on a loaded machine (the suite beside other work, two
# cores) starting the broker, the bridge and the API takes tens of seconds.
START_S = STOP_S = 120.0
# What hub-sim waits for a decision (and for the broker to take a reader's login): the
# commands are checked for what they print, not for speed (the bench measures that).
DECISION_S = "60"


@dataclass
class HubProcess:
    proc: subprocess.Popen[bytes]
    api: str
    broker: str
    mqtt_port: int
    data_dir: Path
    log: Path  # its stdout and stderr: a pipe nobody reads would block it once full

    def output(self) -> str:
        """The end of what the hub printed, for a failing test's message."""
        return self.log.read_text(errors="replace")[-20_000:]

    def stop(self, signum: int | None = signal.SIGINT) -> int:
        """Stop it as Ctrl-C does (None: it was told already); its exit code. Killed (and
        the test failed) if it does not end in time: no hub or broker outlives the test."""
        if signum is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"hub up did not stop within {STOP_S:g}s:\n"
                                 f"{self.output()}") from None

    def sim(self, *args: str, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        # As in the shell that started the hub: hub-sim finds the demo's sheet (the devices'
        # logins to the closed broker) under $HUB_DATA_DIR by itself.
        return subprocess.run([str(BIN / "hub-sim"), "--api", self.api, "--broker", self.broker,
                               *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "HUB_DATA_DIR": str(self.data_dir),
                                   **(env or {})})

    def login(self, device_id: str) -> tuple[str, str]:
        """A device's broker username and password, from the sheet the demo wrote."""
        entry = json.loads((self.data_dir / "demo-provisioning.json").read_text())
        login = entry["devices"][device_id]
        return login["username"], login["password"]


def start_hub(data_dir: Path, *extra: str) -> HubProcess:
    http_port, mqtt_port = free_port(), free_port()
    log = data_dir.with_name(f"{data_dir.name}-hub.log")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "hub"), "up", "--demo", "--data-dir", str(data_dir), "--http-port",
             str(http_port), "--mqtt-port", str(mqtt_port), "--log-level", "warning", *extra],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"},
            start_new_session=True)  # its own process group, as a shell gives it
    hub = HubProcess(proc, f"http://127.0.0.1:{http_port}", f"mqtt://127.0.0.1:{mqtt_port}",
                     mqtt_port, data_dir, log)
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"hub up exited:\n{hub.output()}"
        try:
            if httpx.get(f"{hub.api}/api/v1/health", timeout=10).json()["mqtt_connected"]:
                return hub
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    raise TimeoutError(f"hub up did not become healthy in {START_S:g}s:\n{hub.output()}")


@pytest.fixture
def demo_hub(tmp_path: Path) -> Iterator[HubProcess]:
    hub = start_hub(tmp_path / "data")
    yield hub
    hub.stop()


def test_park_day_scenario_passes_and_can_be_replayed(demo_hub: HubProcess) -> None:
    first = demo_hub.sim("scenario", "park-day")
    assert first.returncode == 0, first.stdout + first.stderr
    again = demo_hub.sim("scenario", "park-day")
    assert again.returncode == 0, again.stdout + again.stderr


def test_resort_spend_scenario_passes_and_the_ledger_verifies(demo_hub: HubProcess) -> None:
    spent = demo_hub.sim("scenario", "resort-spend")
    assert spent.returncode == 0, spent.stdout + spent.stderr
    again = demo_hub.sim("scenario", "resort-spend")
    assert again.returncode == 0, again.stdout + again.stderr
    verified = subprocess.run([str(BIN / "hub"), "ledger", "verify", "--data-dir",
                               str(demo_hub.data_dir)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "ledger OK" in verified.stdout


def test_room_welcome_scenario_passes(demo_hub: HubProcess) -> None:
    for _ in range(2):  # each run is a fresh guest's first entry of their stay
        done = demo_hub.sim("scenario", "room-welcome", "--timeout", DECISION_S,
                            "--within", DECISION_S)
        assert done.returncode == 0, done.stdout + done.stderr


def test_tap_command_prints_the_decision(demo_hub: HubProcess) -> None:
    done = demo_hub.sim("tap", "--device", "gate-park-in-1", "--credential", "04A10000000007",
                        "--timeout", DECISION_S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "allow" in done.stdout.lower() and "Welcome, Gus" in done.stdout and " ms" in done.stdout


def test_scenario_fails_when_a_decision_differs(demo_hub: HubProcess) -> None:
    # Take the gate out of service: the script expects it to open, so the scenario must fail.
    api = f"{demo_hub.api}/api/v1"
    response = httpx.patch(f"{api}/devices/gate-park-in-1", json={"enabled": False},
                           headers=login(api))
    assert response.status_code == 200, response.text
    failed = demo_hub.sim("scenario", "park-day")
    assert failed.returncode == 1, failed.stdout + failed.stderr


def test_hub_sim_logs_in_and_says_when_it_cannot(demo_hub: HubProcess) -> None:
    refused = demo_hub.sim("--password", "not-the-password", "scenario", "park-day")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    said = " ".join((refused.stdout + refused.stderr).split())  # rich wraps long lines
    assert "log-in as 'admin' refused: invalid username or password" in said
    token = login(f"{demo_hub.api}/api/v1", "staff", "demo-staff")["Authorization"].split()[1]
    with_token = demo_hub.sim("pay", "--device", "pos-cafe-1", "--credential",
                              "04A10000000005", "--amount", "100", timeout=60,
                              env={"HUB_SIM_TOKEN": token, "HUB_SIM_PASSWORD": "wrong"})
    assert with_token.returncode == 0, with_token.stdout + with_token.stderr
    assert "APPROVE" in with_token.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stop_signal_loses_nothing_the_broker_acknowledged(demo_hub: HubProcess,
                                                           signum: int) -> None:
    sent: list[str] = []
    answers = []
    username, password = demo_hub.login("lock-106")
    with DeviceClient("demo-resort", "lock-106", port=demo_hub.mqtt_port, username=username,
                      password=password) as lock:
        for n in range(300):
            event = TapEvent(event_id=f"burst-{n}", ts=utcnow(),
                             credential=WristbandCredential(uid="04A10000000006"))
            answers.append(lock.expect(event.event_id))
            info = lock._client.publish(lock._topics[Channel.EVENTS], encode(event), qos=1)
            info.wait_for_publish(5)  # the broker's PUBACK: the hub has taken it
            sent.append(event.event_id)
            if n == 150:
                # To the whole process group, as Ctrl-C in a terminal or systemd's stop:
                # the embedded broker's process must not go before the bridge is done.
                os.killpg(demo_hub.proc.pid, signum)
            if n > 150 and demo_hub.proc.poll() is not None:
                break
        assert demo_hub.stop(None) == 0  # signalled above
        # Taken before the signal: answered. (When Ctrl-C reached the broker's process too,
        # it died first and most of these were decided but never answered.)
        unanswered = [e for e, f in zip(sent[:150], answers, strict=False)
                      if not (f.done() and f.exception() is None)]
    assert unanswered == []
    with sqlite3.connect(demo_hub.data_dir / "hub.db") as db:
        recorded = {row[0] for row in db.execute(
            "select event_id from event where device_id = 'lock-106'")}
    assert len(sent) > 150
    assert set(sent) <= recorded  # every tap the broker acknowledged was decided


INTRUDER_STEPS = (
    "2 cloned band", "3 replayed SUN", "4 forged SUN", "5b replayed phone tap",
    "5c attacker-signed proof", "6 revoked phone key", "7a A reads B's decisions",
    "7b A taps on B's topic", "7c A with B's password", "8a venue id 'hub'",
    "8b venue id 'evil.venue'", "8c device password as the bridge's",
    "9b superseded key, offline lock", "9c superseded key, online",
    "9d offline refusal uploaded", "10a bare UID at a strict venue",
    "10b bare id of a signed phone key", "11a offline entry from a non-lock",
    "11b lock's word, no proof", "11c forged proof", "12 anonymous MQTT client",
    "13b erased guest's token", "14a login brute force", "14b brute force audited")


def test_intruder_scenario_is_refused_at_every_step(demo_hub: HubProcess) -> None:
    """Against `hub up --demo` as it starts by default (a closed broker), twice in a row."""
    sheet = str(demo_hub.data_dir / "demo-provisioning.json")
    wide = {"COLUMNS": "250"}
    first = demo_hub.sim("scenario", "intruder", "--provisioning", sheet, env=wide)
    assert first.returncode == 0, first.stdout + first.stderr
    for title in INTRUDER_STEPS:
        assert title in first.stdout, title
    assert f"{len(INTRUDER_STEPS)} of {len(INTRUDER_STEPS)} attacks refused" in first.stdout
    # The sheet given before `scenario`, as `hub up --demo` prints the command.
    again = demo_hub.sim("--provisioning", sheet, "scenario", "intruder", env=wide)
    assert again.returncode == 0, again.stdout + again.stderr
    # The guesses came from elsewhere: this machine's own log-ins are not slowed down.
    assert demo_hub.sim("scenario", "room-welcome", "--timeout", DECISION_S,
                        "--within", DECISION_S).returncode == 0


def test_intruder_scenario_says_when_the_broker_is_not_secure(tmp_path: Path) -> None:
    hub = start_hub(tmp_path / "open", "--open-broker")
    try:
        done = hub.sim("scenario", "intruder", "--provisioning",
                       str(hub.data_dir / "missing.json"))
        assert done.returncode == 2, done.stdout + done.stderr
    finally:
        hub.stop()


def test_the_default_broker_is_closed_and_hub_sim_logs_in_by_itself(tmp_path: Path) -> None:
    """`hub up --demo` then `hub-sim ...` from the same directory, as the README says."""
    http_port, mqtt_port = free_port(), free_port()
    log = tmp_path / "hub.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "hub"), "up", "--demo", "--http-port", str(http_port), "--mqtt-port",
             str(mqtt_port), "--log-level", "warning"], cwd=tmp_path, stdout=out,
            stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"},
            start_new_session=True)
    hub = HubProcess(proc, f"http://127.0.0.1:{http_port}", f"mqtt://127.0.0.1:{mqtt_port}",
                     mqtt_port, tmp_path / "hub-data", log)
    try:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{hub.api}/api/v1/health", timeout=10).json()[
                        "mqtt_connected"]:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        sheet = tmp_path / "hub-data" / "demo-provisioning.json"
        assert stat.S_IMODE(sheet.stat().st_mode) == 0o600
        anonymous = DeviceClient("demo-resort", "gate-park-in-1", port=mqtt_port)
        with pytest.raises(ConnectionError):
            anonymous.connect(timeout=3)
        anonymous.close()
        env = {k: v for k, v in os.environ.items() if k != "HUB_DATA_DIR"}
        tapped = subprocess.run(
            [str(BIN / "hub-sim"), "--api", f"http://127.0.0.1:{http_port}", "--broker",
             f"mqtt://127.0.0.1:{mqtt_port}", "tap", "--device", "gate-park-in-1",
             "--credential", "04A10000000002"], cwd=tmp_path, capture_output=True, text=True,
            timeout=60, env=env)
        assert tapped.returncode == 0, tapped.stdout + tapped.stderr
        assert "ALLOW" in tapped.stdout
        spent = subprocess.run(
            [str(BIN / "hub-sim"), "--api", f"http://127.0.0.1:{http_port}", "--broker",
             f"mqtt://127.0.0.1:{mqtt_port}", "scenario", "resort-spend"], cwd=tmp_path,
            capture_output=True, text=True, timeout=120, env=env)
        assert spent.returncode == 0, spent.stdout + spent.stderr  # receipts: guests' logins
        loaded = subprocess.run(
            [str(BIN / "hub-sim"), "--api", f"http://127.0.0.1:{http_port}", "--broker",
             f"mqtt://127.0.0.1:{mqtt_port}", "load", "--rate", "50", "--duration", "2"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    finally:
        hub.stop()


def test_hub_status_says_whether_taps_are_decided(demo_hub: HubProcess) -> None:
    done = subprocess.run([str(BIN / "hub"), "status", "--api", demo_hub.api],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deciding taps" in done.stdout and "worker_alive" in done.stdout
    gone = subprocess.run([str(BIN / "hub"), "status", "--api", f"http://127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, timeout=30)
    assert gone.returncode == 2 and "no answer" in gone.stdout
