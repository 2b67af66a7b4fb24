"""The leak guard sees what a test leaves behind, and kills the processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.utils import leaks

pytestmark = pytest.mark.skipif(not leaks.supported(), reason="reads Linux's /proc")


def test_a_child_left_running_is_named_and_killed() -> None:
    before = leaks.Snapshot.take(leaks.Owned(), "function")
    left = subprocess.Popen(["sleep", "60"])
    said = before.left_children("here")
    assert said is not None and f"pid {left.pid}: sleep 60" in said
    assert left.wait(5) == -9


def test_a_child_that_ends_within_the_grace_period_is_not() -> None:
    before = leaks.Snapshot.take(leaks.Owned(), "function")
    ending = subprocess.Popen(["sleep", "0.3"])
    assert before.left_children("here") is None
    ending.wait(5)


def test_what_a_broader_fixture_started_is_its_own_until_its_scope_ends() -> None:
    owned = leaks.Owned()
    test, module = (leaks.Snapshot.take(owned, level) for level in ("function", "module"))
    pids, fds = set(leaks.children()), len(leaks.descriptors())
    kept = subprocess.Popen(["sleep", "60"])  # as a module-scoped fixture asked for lazily
    owned.note("module", pids, fds)
    assert test.left_children("the test") is None
    said = module.left_children("the module")
    assert said is not None and f"pid {kept.pid}" in said
    assert kept.wait(5) == -9


def test_what_a_session_fixture_started_is_its_own() -> None:
    owned = leaks.Owned()
    module = leaks.Snapshot.take(owned, "module")
    pids, fds = set(leaks.children()), len(leaks.descriptors())
    kept = subprocess.Popen(["sleep", "60"])
    owned.note("session", pids, fds)
    try:
        assert module.left_children("the module") is None
    finally:
        kept.kill()
        kept.wait(5)


def test_descriptors_left_open_are_counted_beyond_the_margin(tmp_path: Path) -> None:
    before = leaks.Snapshot.take(leaks.Owned(), "module")
    files = [(tmp_path / f"f{n}").open("w") for n in range(leaks.FD_MARGIN + 3)]
    try:
        said = before.left_fds("here")
        assert said is not None and f"{leaks.FD_MARGIN + 3} more" in said
    finally:
        for file in files:
            file.close()
    assert before.left_fds("here") is None
