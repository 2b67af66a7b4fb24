"""What a test leaves behind: child processes still running, file descriptors still open.

A hub whose start failed half-way and was never stopped keeps its broker's process, the
threads that feed it and their pipes and sockets; every test after it then runs beside an
extra broker, and a full run fails from the middle on, far from the test that leaked. These
checks name that test instead (tests/conftest.py runs them around every test and module):

- after each test, and after each module (whose fixtures may start processes too), no child
  process of this one may be running that was not before, but for those a fixture that
  outlives it started (Mosquitto for the session, or for a module) and multiprocessing's
  resource tracker; one left behind is killed, so the tests after it do not run beside it;
- after each module, no more than ``FD_MARGIN`` more file descriptors may be open than
  before it, net of what session-scoped fixtures set up during it opened.

They read /proc (Linux only; elsewhere they check nothing): a few small files per test.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROC = Path("/proc")
# Caches, pools and lazily opened log files grow a little; a leaked hub holds far more
# (its broker's pipes, its queue's pipe and semaphore, the bridge's socket, the databases).
FD_MARGIN = 8
GRACE = 3.0  # seconds a child told to stop may take to end before it counts as left behind
_TRACKER = "multiprocessing.resource_tracker"  # started once, lives as long as we do


def supported() -> bool:
    """Can this process's children and descriptors be read (Linux /proc)?"""
    return (PROC / "self" / "task").is_dir() and (PROC / "self" / "fd").is_dir()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # gone meanwhile (a thread ended, a process was reaped)
        return ""


def children() -> dict[int, str]:
    """This process's running children (zombies, already ended, left out): pid -> command."""
    found: dict[int, str] = {}
    for task in (PROC / "self" / "task").iterdir():
        for pid in map(int, _read(task / "children").split()):
            stat = _read(PROC / str(pid) / "stat")
            # "pid (comm) state ...": comm may hold spaces and parentheses.
            state = stat.rpartition(")")[2].split()[:1]
            if state in ([], ["Z"], ["X"]):
                continue
            command = _read(PROC / str(pid) / "cmdline").replace("\0", " ").strip()
            if _TRACKER not in command:
                found[pid] = command[:200]
    return found


def descriptors() -> dict[int, str]:
    """This process's open file descriptors: fd -> what it is (a path, socket:[...], pipe:[...])."""
    found: dict[int, str] = {}
    fds = PROC / "self" / "fd"
    for name in os.listdir(fds):
        try:
            found[int(name)] = os.readlink(fds / name)
        except OSError:  # the listing's own descriptor, closed by now
            continue
    return found


def _settle(pids: set[int], deadline: float) -> set[int]:
    """Of ``pids``, those still running at ``deadline`` (checked every 50 ms)."""
    while pids:
        pids &= children().keys()
        if not pids or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return pids


def _end(pids: set[int]) -> None:
    """Kill what was left behind, so the tests after it do not run beside it (the broker's
    process ignores SIGTERM: only the hub may stop it, after draining the bridge)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    _settle(set(pids), time.monotonic() + GRACE)
    import multiprocessing

    multiprocessing.active_children()  # reaps the killed brokers' processes


def end_stragglers() -> str | None:
    """At the very end, once every fixture is torn down: kill any child still running. The
    broker's process ignores SIGTERM, and multiprocessing's exit handler would otherwise
    wait for one forever: a leak would hang the run instead of failing it."""
    left = set(children())
    if not left:
        return None
    commands = children()
    _end(left)
    return "; ".join(f"pid {pid}: {commands.get(pid, '?')}" for pid in sorted(left))


# Fixtures of these scopes outlive the test that first asks for one (often lazily, through
# request.getfixturevalue), so what they start is theirs, checked when their scope ends.
_BROADER = {"function": ("class", "module", "package", "session"),
            "module": ("package", "session")}


@dataclass
class Owned:
    """What fixtures broader than a test started: theirs until their scope ends, by design."""

    pids: dict[str, set[int]] = field(default_factory=dict)  # by the fixture's scope
    fds: int = 0  # descriptors session- and package-scoped ones opened: not a module's

    def note(self, scope: str, before_pids: set[int], before_fds: int) -> None:
        """A fixture of ``scope`` was set up since ``before_*`` were read."""
        self.pids.setdefault(scope, set()).update(children().keys() - before_pids)
        if scope in _BROADER["module"]:
            self.fds += len(descriptors()) - before_fds

    def beyond(self, level: str) -> set[int]:
        """The children of fixtures that outlive a test (``level`` "function") or a module."""
        return set().union(*(self.pids.get(scope, set()) for scope in _BROADER[level]))


class FixtureWatch:
    """Notes what each fixture broader than a test starts. A plugin of the whole session,
    not a conftest hook: pytest sets session-scoped fixtures up with the session's hooks,
    which see only a conftest.py at the root, not tests/conftest.py."""

    def __init__(self, owned: Owned) -> None:
        self.owned = owned

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[object],
                             ) -> Generator[None, object, object]:
        if fixturedef.scope == "function":
            return (yield)
        pids, fds = set(children()), len(descriptors())
        try:
            return (yield)
        finally:
            self.owned.note(fixturedef.scope, pids, fds)


@dataclass
class Snapshot:
    """What runs and is open at the start of a test or a module."""

    owned: Owned
    level: str  # "function" (a test) or "module"
    pids: set[int]
    fds: dict[int, str]
    owned_fds: int

    @classmethod
    def take(cls, owned: Owned, level: str) -> Snapshot:
        """At the start of a test (children only) or of a module (children, descriptors)."""
        fds: dict[int, str] = {}
        if level == "module":
            gc.collect()  # sockets amqtt and paho leave to the collector: not ours to count
            fds = descriptors()
        return cls(owned, level, set(children()), fds, owned.fds)

    def left_children(self, where: str) -> str | None:
        """Children started since, still running after a grace period (then killed)."""
        new = children().keys() - self.pids - self.owned.beyond(self.level)
        if not new:
            return None
        commands = children()
        left = _settle(set(new), time.monotonic() + GRACE)
        if not left:
            return None
        _end(left)
        listed = "; ".join(f"pid {pid}: {commands.get(pid, '?')}" for pid in sorted(left))
        return f"{where} left {len(left)} child process(es) running (killed now): {listed}"

    def left_fds(self, where: str) -> str | None:
        """More descriptors open than at the start, beyond the margin."""
        gc.collect()
        now = descriptors()
        grown = len(now) - len(self.fds) - (self.owned.fds - self.owned_fds)
        if grown <= FD_MARGIN:
            return None
        before = set(self.fds.items())
        new = sorted(target for fd, target in now.items() if (fd, target) not in before)
        kinds: dict[str, int] = {}
        for target in new:
            kind = target.split(":[", 1)[0] if ":[" in target else target
            kinds[kind] = kinds.get(kind, 0) + 1
        ranked = sorted(kinds.items(), key=lambda item: -item[1])
        listed = ", ".join(f"{count} x {kind}" for kind, count in ranked[:8])
        if len(ranked) > 8:
            listed += f", and {len(ranked) - 8} more"
        return (f"{where} left {grown} more file descriptors open than before it "
                f"(margin {FD_MARGIN}): {listed}")
