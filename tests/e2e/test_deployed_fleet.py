"""The deployment topology runs the scenarios: ``hub db upgrade`` on PostgreSQL, two
``hub worker`` processes sharing Mosquitto's traffic (MQTT 5, a shared subscription) and
one ``hub api``, each a process of its own, driven by ``hub-sim`` over MQTT and REST only.
The same scenarios run on the embedded defaults in tests/e2e/test_cli.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.fleet import HUB, Api, Mosquitto, Worker, demo_database

pytestmark = [pytest.mark.postgres, pytest.mark.mosquitto]

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, postgres_url: str
             ) -> Iterator[tuple[Api, Mosquitto, str]]:
    root = tmp_path_factory.mktemp("deployed")
    url = demo_database(root, postgres_url)
    upgraded = subprocess.run([*HUB, "db", "upgrade", "--database-url", url],
                              capture_output=True, text=True, timeout=120)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    broker = Mosquitto(root)
    broker.start()
    workers = [Worker(f"w{n}", root, broker.port, url) for n in (1, 2)]
    api = Api(root, broker.port, url)
    try:
        for w in workers:
            w.start()
        api.start()
        for w in workers:
            w.wait_connected()
        yield api, broker, url
    finally:
        codes = {"api": api.stop(), **{w.name: w.stop() for w in workers}}
        broker.stop()
    assert all(code == 0 for code in codes.values()), codes  # SIGTERM: an orderly stop


def sim(deployed: tuple[Api, Mosquitto, str], *args: str) -> subprocess.CompletedProcess[str]:
    api, broker, _ = deployed
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [str(BIN / "hub-sim"), "--api", api.url, "--broker",
         f"mqtt://127.0.0.1:{broker.port}", *args],
        capture_output=True, text=True, timeout=180, env=env)


@pytest.mark.parametrize("scenario", ["park-day", "resort-spend", "room-welcome"])
def test_a_scenario_passes_on_the_deployed_fleet(deployed: tuple[Api, Mosquitto, str],
                                                 scenario: str) -> None:
    done = sim(deployed, "scenario", scenario)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{scenario}: all" in done.stdout and "as scripted" in done.stdout, done.stdout


def test_the_ledger_verifies_after_the_scenarios(deployed: tuple[Api, Mosquitto, str]) -> None:
    assert sim(deployed, "scenario", "resort-spend").returncode == 0
    verify = subprocess.run([*HUB, "ledger", "verify", "--database-url", deployed[2]],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0 and "ledger OK" in verify.stdout, verify.stdout + verify.stderr


def test_the_api_tells_whether_the_workers_are_deciding(
        deployed: tuple[Api, Mosquitto, str]) -> None:
    import json
    import time

    api, _, _ = deployed
    status = [*HUB, "status", "--api", api.url]
    deadline = time.monotonic() + 20  # the first heartbeats: at each worker's start
    while True:
        done = subprocess.run([*status, "--json"], capture_output=True, text=True, timeout=30)
        body = json.loads(done.stdout)
        names = {w["name"] for w in body.get("workers") or [] if w["deciding"]}
        if names >= {"w1", "w2"} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert done.returncode == 0, done.stdout + done.stderr
    assert body["deciding"] is True and body["status"] == "ok" and not body["problems"]
    assert names >= {"w1", "w2"}
    assert all(w["seen_s_ago"] < 15 for w in body["workers"])
    shown = subprocess.run(status, capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, COLUMNS="200"))
    assert shown.returncode == 0 and "deciding taps" in shown.stdout
    assert "worker w1" in shown.stdout and "worker w2" in shown.stdout
