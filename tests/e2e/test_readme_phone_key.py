"""The README's phone-key walk-through, run as written against `hub up --demo`.

The blocks marked ``<!-- phone-key-walkthrough -->`` are joined into one script and run
from a directory where ``hub-data/`` is the hub's data directory, as a reader who started
the demo there would; only the REST address is pointed at this hub's port. The block
marked ``<!-- phone-key-oneliner -->`` is run as ``hub-sim`` with this hub's addresses.
If a step in the README is wrong, the door does not open and this test fails.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli import HubProcess, start_hub

README = Path(__file__).resolve().parents[2] / "README.md"
BIN = Path(sys.executable).parent
README_API = '"http://127.0.0.1:8000/api/v1"'


def marked_blocks(text: str, marker: str, language: str) -> list[str]:
    """The fenced code blocks of ``language`` that directly follow ``<!-- marker -->``."""
    pattern = re.compile(rf"<!-- {re.escape(marker)} -->\n```{language}\n(.*?)```", re.DOTALL)
    return pattern.findall(text)


@pytest.fixture
def readme_hub(tmp_path: Path) -> Iterator[HubProcess]:
    """`hub up --demo` with its data in ``<tmp>/hub-data``, as the README's directory."""
    hub = start_hub(tmp_path / "hub-data")
    yield hub
    if hub.proc.poll() is None:
        hub.proc.send_signal(signal.SIGINT)
        hub.proc.wait(30)


def test_the_blocks_are_found() -> None:
    text = README.read_text()
    assert len(marked_blocks(text, "phone-key-walkthrough", "python")) >= 5
    assert len(marked_blocks(text, "phone-key-oneliner", "bash")) == 1
    # Every marker is followed by a block of its kind: none silently skipped.
    assert text.count("<!-- phone-key-walkthrough -->") == len(
        marked_blocks(text, "phone-key-walkthrough", "python"))


def test_the_readme_walk_through_opens_the_door(readme_hub: HubProcess, tmp_path: Path) -> None:
    script = "\n".join(marked_blocks(README.read_text(), "phone-key-walkthrough", "python"))
    assert script.count(README_API) == 1, "the walk-through names the REST address once"
    script = script.replace(README_API, repr(f"{readme_hub.api}/api/v1"))
    path = tmp_path / "walk_through.py"
    path.write_text(script)
    done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "('phone-guest-01', 'pk-guest-01')" in lines[0]
    assert "room-101" in lines[1]
    # The manual proof opens the door; a forged one does not, and the journey says why;
    # the SDK's phone opens it again.
    assert lines[2] == "allow ok Welcome, Charlie", done.stdout
    assert lines[3] == "deny credential_forged Key not genuine - please see staff", done.stdout
    assert lines[4].startswith("credential_forged proof_bad_signature: "), done.stdout
    assert lines[5] == "allow ok Welcome, Charlie", done.stdout


def test_the_readme_one_liner_opens_the_door(readme_hub: HubProcess) -> None:
    (block,) = marked_blocks(README.read_text(), "phone-key-oneliner", "bash")
    command = shlex.split(block.splitlines()[0])
    assert command[0] == ".venv/bin/hub-sim", command
    # The global options go before the command, as the README's `hub-sim` section says.
    done = readme_hub.sim(*command[1:])
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"ALLOW ok\s+\"Welcome, Charlie\"\s+guest: Charlie\s+zone: room-101",
                     done.stdout), done.stdout


def test_hub_sim_phone_opens_the_strict_spa_gate_with_a_spa_key(readme_hub: HubProcess) -> None:
    """The spa takes signed phone keys only; guest 01 holds the spa too, and hub-sim asks
    for a key of its lock's venue (a resort key there would be another venue's)."""
    done = readme_hub.sim("--venue", "demo-spa", "phone", "--guest", "guest-01",
                          "--device", "gate-spa-in-1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"ALLOW ok", done.stdout) and "zone: spa" in done.stdout, done.stdout
