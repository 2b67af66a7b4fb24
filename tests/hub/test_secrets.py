"""Secrets are created once, 0600, reused, and never shown."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hub.secrets import load_or_create


def test_created_private_and_reused(tmp_path: Path) -> None:
    first = load_or_create(tmp_path)
    for name in ("tag-master.key", "broker.key"):
        mode = stat.S_IMODE((tmp_path / "secrets" / name).stat().st_mode)
        assert mode == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert load_or_create(tmp_path) == first  # the same keys on the next start
    assert len(first.tag_master_key) == 16 and len(first.broker_key) == 32
    assert first.tag_master_key.hex() not in repr(first)


def test_refuses_a_key_others_can_read(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    (tmp_path / "secrets" / "broker.key").chmod(0o644)
    with pytest.raises(PermissionError):
        load_or_create(tmp_path)
