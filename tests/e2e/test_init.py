"""``hub init`` makes everything a fleet's hosts copy, the phone-key signing keys too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from hub.cli import app
from hub.server import Hub
from tests.conftest import hub_settings


def kids(data_dir: Path) -> list[str]:
    keys = json.loads((data_dir / "secrets" / "phone-signing-keys.json").read_text())
    return sorted(k["kid"] for k in (keys["keys"] if isinstance(keys, dict) else keys))


def test_hosts_copying_what_hub_init_made_sign_with_the_same_key(tmp_path: Path) -> None:
    first = tmp_path / "first" / "hub"
    done = CliRunner().invoke(app, ["init", "--data-dir", str(first)])
    assert done.exit_code == 0, done.output
    made = kids(first)
    assert made
    second = tmp_path / "second" / "hub"  # another host: the secrets copied, nothing else
    shutil.copytree(first / "secrets", second / "secrets")
    for extra in first.glob("broker.key"):
        shutil.copy2(extra, second / extra.name)
    hub = Hub(hub_settings(tmp_path / "second"), bridge=True, api=False)
    hub.start()
    try:
        assert sorted(k.kid for k in hub.signing_keys) == made
    finally:
        hub.stop()
