"""Per-device broker credentials and ACL rules, without a broker."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from hub.broker_auth import (
    BrokerAuth,
    allowed,
    device_password,
    device_username,
    guest_password,
    guest_username,
    mosquitto_files,
    mosquitto_password_line,
    parse_device_username,
    password_ok,
)

SECRET = b"0123456789abcdef0123456789abcdef"
BRIDGE = "hub-bridge"
A = "demo-resort.gate-a"
B = "demo-resort.gate-b"
GUEST = "guest-guest-01"
R = "venuehub/v1"
HERE = f"{R}/demo-resort"

# (username, action, topic or filter, allowed?)
TABLE: list[tuple[str, str, str, bool]] = [
    # a device writes its own events and status, nothing else
    (A, "publish", f"{HERE}/device/gate-a/events", True),
    (A, "publish", f"{HERE}/device/gate-a/status", True),
    (B, "publish", f"{HERE}/device/gate-b/events", True),
    (A, "publish", f"{HERE}/device/gate-b/events", False),
    (A, "publish", f"{HERE}/device/gate-b/status", False),
    (B, "publish", f"{HERE}/device/gate-a/events", False),
    (A, "publish", f"{R}/other-park/device/gate-a/events", False),  # same id, other venue
    (A, "publish", f"{HERE}/hub/gate-a/decisions", False),  # forging its own decision
    (A, "publish", f"{HERE}/hub/gate-b/commands", False),
    (A, "publish", f"{HERE}/guest/guest-01/notifications", False),
    (A, "publish", f"{HERE}/keys/gate-a", False),
    (A, "publish", f"{HERE}/device/gate-a/telemetry", False),  # not a channel it may use
    (A, "publish", f"{HERE}/device/gate-a/events/more", False),
    (A, "publish", f"{HERE}/device/gate-a", False),
    (A, "publish", f"{HERE}/device/gate-a/+", False),  # wildcards are no topic names
    (A, "publish", f"{HERE}/device/gate-a/#", False),
    (A, "publish", "elsewhere/device/gate-a/events", False),
    (A, "publish", "$SYS/broker/load", False),
    (A, "publish", "", False),
    # a device reads only its own hub/{itself}/#
    (A, "subscribe", f"{HERE}/hub/gate-a/#", True),
    (A, "subscribe", f"{HERE}/hub/gate-a/decisions", True),
    (A, "subscribe", f"{HERE}/hub/gate-a/commands", True),
    (A, "subscribe", f"{HERE}/hub/gate-a/errors", True),
    (A, "subscribe", f"{HERE}/hub/gate-a/+", True),
    (A, "subscribe", f"{HERE}/hub/gate-a", True),  # '#' also matches its parent level
    (A, "subscribe", f"{HERE}/hub/gate-b/decisions", False),
    (A, "subscribe", f"{HERE}/hub/gate-b/#", False),
    (A, "subscribe", f"{HERE}/hub/+/decisions", False),
    (A, "subscribe", f"{HERE}/hub/+/#", False),
    (A, "subscribe", f"{HERE}/hub/#", False),
    (A, "subscribe", f"{R}/+/hub/#", False),  # would read every device's decisions
    (A, "subscribe", f"{R}/+/hub/gate-a/#", False),  # gate-a of every venue
    (A, "subscribe", f"{R}/other-park/hub/gate-a/#", False),
    (A, "subscribe", f"{R}/#", False),
    (A, "subscribe", "#", False),
    (A, "subscribe", "+/+/+/+/+/+", False),
    (A, "subscribe", f"{HERE}/device/gate-a/events", False),  # its own writes: not readable
    (A, "subscribe", f"{HERE}/device/gate-b/status", False),
    (A, "subscribe", f"{HERE}/guest/guest-01/notifications", False),
    (A, "subscribe", f"{HERE}/hub/gate-a/#/x", False),  # invalid filters
    (A, "subscribe", f"{HERE}/hub/gate-a/de#", False),
    (A, "subscribe", f"{HERE}/hub/gate-a+/#", False),
    (A, "subscribe", f"$share/g/{HERE}/hub/gate-a/#", True),
    (A, "subscribe", f"$share/g/{R}/+/hub/#", False),
    (A, "subscribe", f"$share//{HERE}/hub/gate-a/#", False),
    (A, "subscribe", "$SYS/#", False),
    (A, "receive", f"{HERE}/hub/gate-a/decisions", True),
    (A, "receive", f"{HERE}/hub/gate-b/decisions", False),
    (A, "receive", f"{HERE}/device/gate-a/events", False),
    (A, "receive", f"{HERE}/device/gate-b/events", False),
    (A, "receive", f"{HERE}/hub/gate-a/+", False),
    # device ids may contain dots: the username splits at the first one
    ("demo-resort.gate.a", "publish", f"{HERE}/device/gate.a/events", True),
    ("demo-resort.gate.a", "publish", f"{HERE}/device/gate-a/events", False),
    ("other-park.gate-a", "publish", f"{HERE}/device/gate-a/events", False),
    ("other-park.gate-a", "subscribe", f"{HERE}/hub/gate-a/#", False),
    # the bridge reads every device and writes hub, guest and keys topics
    (BRIDGE, "subscribe", f"{R}/+/device/#", True),
    (BRIDGE, "subscribe", f"$share/hub/{R}/+/device/#", True),
    (BRIDGE, "subscribe", f"{R}/+/device/+/events", True),
    (BRIDGE, "subscribe", f"{HERE}/device/gate-a/events", True),
    (BRIDGE, "subscribe", f"{R}/#", False),
    (BRIDGE, "subscribe", "#", False),
    (BRIDGE, "subscribe", f"{R}/+/hub/#", False),
    (BRIDGE, "subscribe", f"{R}/+/guest/#", False),
    (BRIDGE, "receive", f"{HERE}/device/gate-a/events", True),
    (BRIDGE, "receive", f"{HERE}/device/gate-b/status", True),
    (BRIDGE, "receive", f"{HERE}/hub/gate-a/decisions", False),
    (BRIDGE, "publish", f"{HERE}/hub/gate-a/decisions", True),
    (BRIDGE, "publish", f"{R}/other-park/hub/gate-b/commands", True),
    (BRIDGE, "publish", f"{HERE}/guest/guest-01/notifications", True),
    (BRIDGE, "publish", f"{HERE}/keys/gate-a", True),
    (BRIDGE, "publish", f"{HERE}/staff/alerts", True),  # a stuck guest, a lasting heart rate
    (A, "publish", f"{HERE}/staff/alerts", False),
    (A, "subscribe", f"{HERE}/staff/alerts", False),
    (BRIDGE, "publish", f"{HERE}/keys/gate-a/aes/1", True),
    (BRIDGE, "publish", f"{HERE}/device/gate-a/events", False),  # no forged taps
    (BRIDGE, "publish", f"{HERE}/device/gate-a/status", False),
    (BRIDGE, "publish", "elsewhere/hub/gate-a/decisions", False),
    (BRIDGE, "publish", f"{HERE}/hub/+/decisions", False),
    # a guest's app reads its own notifications only, in any venue, and writes nothing
    (GUEST, "subscribe", f"{HERE}/guest/guest-01/notifications", True),
    (GUEST, "subscribe", f"{R}/+/guest/guest-01/notifications", True),
    (GUEST, "subscribe", f"{HERE}/guest/guest-02/notifications", False),
    (GUEST, "subscribe", f"{HERE}/guest/+/notifications", False),
    (GUEST, "subscribe", f"{HERE}/guest/guest-01/#", False),  # wider than its one topic
    (GUEST, "subscribe", f"{HERE}/hub/gate-a/#", False),
    (GUEST, "receive", f"{HERE}/guest/guest-01/notifications", True),
    (GUEST, "receive", f"{HERE}/guest/guest-02/notifications", False),
    (GUEST, "publish", f"{HERE}/guest/guest-01/notifications", False),
    (GUEST, "publish", f"{HERE}/device/gate-a/events", False),
    # 'guest-' usernames are always guests, even with a dot
    ("guest-john.doe", "subscribe", f"{HERE}/guest/john.doe/notifications", True),
    ("guest-john.doe", "publish", f"{R}/guest-john/device/doe/events", False),
    # nobody else gets anything
    ("", "publish", f"{HERE}/device/gate-a/events", False),
    ("demo-resort", "publish", f"{HERE}/device/gate-a/events", False),
    ("demo-resort.", "subscribe", f"{HERE}/hub/gate-a/#", False),
    ("someone", "subscribe", f"{R}/+/device/#", False),
    ("guest-", "subscribe", f"{HERE}/guest/guest-01/notifications", False),
]


@pytest.mark.parametrize(("username", "action", "topic", "expected"), TABLE,
                         ids=[f"{u or '<none>'}-{a}-{t or '<empty>'}" for u, a, t, _ in TABLE])
def test_allowed_table(username: str, action: str, topic: str, expected: bool) -> None:
    assert allowed(username, action, topic, bridge_user=BRIDGE) is expected  # type: ignore[arg-type]


def test_allowed_refuses_unknown_actions_and_an_empty_bridge_user() -> None:
    assert not allowed(A, "delete", f"{HERE}/device/gate-a/events",  # type: ignore[arg-type]
                       bridge_user=BRIDGE)
    assert not allowed("", "subscribe", f"{R}/+/device/#", bridge_user="")


LEVELS = ["venuehub", "v1", "demo-resort", "other-park", "device", "hub", "guest", "gate-a",
          "gate-b", "guest-01", "events", "status", "decisions", "notifications", "+", "#", ""]
USERS = [A, B, BRIDGE, GUEST, "other-park.gate-a"]


@given(st.sampled_from(USERS), st.lists(st.sampled_from(LEVELS), min_size=1, max_size=7),
       st.lists(st.sampled_from([lv for lv in LEVELS if lv not in ("+", "#")]),
                min_size=1, max_size=7))
def test_an_allowed_subscription_only_matches_receivable_topics(
    user: str, filter_levels: list[str], topic_levels: list[str]
) -> None:
    """Whatever a permitted filter matches, the user may receive: no read around the ACL."""
    filter_, topic = "/".join(filter_levels), "/".join(topic_levels)
    if allowed(user, "subscribe", filter_, bridge_user=BRIDGE) and topic_matches_sub(filter_,
                                                                                      topic):
        assert allowed(user, "receive", topic, bridge_user=BRIDGE)


@given(st.sampled_from(USERS), st.lists(st.sampled_from([lv for lv in LEVELS
                                                         if lv not in ("+", "#")]),
                                        min_size=1, max_size=7))
def test_receive_is_subscribing_to_the_exact_topic(user: str, levels: list[str]) -> None:
    topic = "/".join(levels)
    assert (allowed(user, "receive", topic, bridge_user=BRIDGE)
            == allowed(user, "subscribe", topic, bridge_user=BRIDGE))


# ------------------------------------------------------------------ usernames


def test_usernames() -> None:
    assert device_username("demo-resort", "gate-a") == A
    assert parse_device_username(A) == ("demo-resort", "gate-a")
    assert parse_device_username("demo-resort.gate.a") == ("demo-resort", "gate.a")
    assert parse_device_username(GUEST) is None
    assert parse_device_username("no-dot") is None
    assert guest_username("guest-01") == GUEST
    for venue in ("demo.resort", "guest-house", "bad venue", ""):
        with pytest.raises(ValueError):
            device_username(venue, "gate-a")
    with pytest.raises(ValueError):
        guest_username("a/b")


# ------------------------------------------------------------------ passwords


def test_device_password_is_deterministic_and_distinct() -> None:
    password = device_password(SECRET, "demo-resort", "gate-a")
    assert password == device_password(SECRET, "demo-resort", "gate-a")
    assert len(password) == 32 and re.fullmatch(r"[A-Za-z0-9_-]{32}", password)
    others = {
        device_password(SECRET, "demo-resort", "gate-b"),
        device_password(SECRET, "other-park", "gate-a"),
        device_password(SECRET[::-1], "demo-resort", "gate-a"),
        device_password(SECRET + b"x", "demo-resort", "gate-a"),
        device_password(SECRET, "demo-resort", "gate-a.1"),
        device_password(SECRET, "demo-resortg", "ate-a"),  # same concatenation, other split
    }
    assert password not in others and len(others) == 6


def test_device_password_refuses_weak_secrets_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        device_password(b"", "demo-resort", "gate-a")
    with pytest.raises(ValueError) as err:
        device_password(b"short-secret", "demo-resort", "gate-a")
    assert "short-secret" not in str(err.value)
    with pytest.raises(ValueError):
        device_password("a text secret, not bytes", "demo-resort", "gate-a")  # type: ignore[arg-type]


def test_broker_auth_hides_its_secrets() -> None:
    auth = BrokerAuth(SECRET, BRIDGE, "bridge-password")
    assert SECRET.decode() not in repr(auth) and "bridge-password" not in repr(auth)
    with pytest.raises(ValueError):
        BrokerAuth(SECRET, "demo-resort.bridge", "x")  # would be read as a device
    with pytest.raises(ValueError):
        BrokerAuth(SECRET, BRIDGE, "")


def test_password_ok() -> None:
    auth = BrokerAuth(SECRET, BRIDGE, "bridge-password")
    mine = device_password(SECRET, "demo-resort", "gate-a")
    assert password_ok(A, mine, auth)
    assert password_ok(A, mine.encode(), auth)
    assert not password_ok(B, mine, auth)
    assert not password_ok(A, device_password(SECRET, "demo-resort", "gate-b"), auth)
    assert not password_ok(A, mine[:-1], auth)
    assert not password_ok(A, None, auth)
    assert password_ok(BRIDGE, "bridge-password", auth)
    assert not password_ok(BRIDGE, "bridge-passwore", auth)
    assert not password_ok(GUEST, mine, auth)  # guests have no broker login yet
    assert not password_ok("", "", auth)


# ------------------------------------------------------- Mosquitto's $7$ lines


def parse_line(line: str) -> tuple[str, int, bytes, bytes]:
    username, hashed = line.split(":", 1)
    empty, kind, iterations, salt, key = hashed.split("$")
    assert (empty, kind) == ("", "7")
    return username, int(iterations), base64.b64decode(salt), base64.b64decode(key)


def test_password_line_round_trip() -> None:
    line = mosquitto_password_line("demo-resort.gate-a", "s3cret")
    username, iterations, salt, key = parse_line(line)
    assert (username, iterations, len(salt), len(key)) == ("demo-resort.gate-a", 101, 12, 64)
    assert key == hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, iterations, 64)
    assert key != hashlib.pbkdf2_hmac("sha512", b"s3creT", salt, iterations, 64)
    assert mosquitto_password_line("u", "p") != mosquitto_password_line("u", "p")  # fresh salts
    _, iterations, salt, key = parse_line(mosquitto_password_line("u", "p", iterations=1000,
                                                                  salt=b"0123456789ab"))
    assert (iterations, salt) == (1000, b"0123456789ab")
    assert key == hashlib.pbkdf2_hmac("sha512", b"p", salt, 1000, 64)


def test_password_line_matches_what_mosquitto_passwd_wrote() -> None:
    # Written by `mosquitto_passwd -b -c pw alice secret` (Mosquitto 2.0.11).
    written = ("alice:$7$101$ubHvBrsyeb7yHkDx$oX1vVAKLgd9/o9HhrMs5j+cTznQlHgoK2YCbtnDA2nKtHjpoLANu"
               "r31pDuRDz4NXL6ogcsjLhWiGlhdcx2PxCQ==")
    salt = base64.b64decode("ubHvBrsyeb7yHkDx")
    assert mosquitto_password_line("alice", "secret", salt=salt) == written


@pytest.mark.mosquitto
def test_password_line_matches_the_installed_mosquitto_passwd(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        pytest.skip("mosquitto_passwd not installed")
    subprocess.run([tool, "-b", "-c", str(tmp_path / "pw"), "demo-resort.gate-a", "pässword"],
                   check=True)
    written = (tmp_path / "pw").read_text().strip()
    _, iterations, salt, _ = parse_line(written)
    assert mosquitto_password_line("demo-resort.gate-a", "pässword", salt=salt,
                                   iterations=iterations) == written


@pytest.mark.parametrize("username", ["", "a:b", "a b", "a\nb"])
def test_password_line_refuses_usernames_mosquitto_cannot_read(username: str) -> None:
    with pytest.raises(ValueError):
        mosquitto_password_line(username, "p")


def test_mosquitto_files() -> None:
    devices = [("demo-resort", "gate-b"), ("demo-resort", "gate-a"), ("demo-resort", "gate-a"),
               ("other-park", "gate-a")]
    passwd, acl = mosquitto_files(devices, secret=SECRET, bridge_user=BRIDGE,
                                  bridge_password="bridge-password")
    lines = [parse_line(line) for line in passwd.splitlines()]
    assert [u for u, *_ in lines] == [BRIDGE, A, B, "other-park.gate-a"]
    for username, iterations, salt, key in lines:
        venue, _, device = username.partition(".")
        password = ("bridge-password" if username == BRIDGE
                    else device_password(SECRET, venue, device))
        assert key == hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    assert SECRET.decode() not in passwd + acl and "bridge-password" not in passwd + acl
    blocks = {block.splitlines()[0]: block.splitlines()[1:]
              for block in acl.split("\n\n") if block.startswith("user ")}
    assert blocks[f"user {BRIDGE}"] == [
        f"topic read {R}/+/device/#", f"topic write {R}/+/hub/#",
        f"topic write {R}/+/guest/#", f"topic write {R}/+/keys/#",
        f"topic write {R}/+/staff/#"]
    assert blocks[f"user {A}"] == [
        f"topic write {HERE}/device/gate-a/events", f"topic write {HERE}/device/gate-a/status",
        f"topic read {HERE}/hub/gate-a/#", f"topic read {HERE}/keys/#"]
    assert blocks["user other-park.gate-a"][2] == f"topic read {R}/other-park/hub/gate-a/#"
    assert len(blocks) == 4


def test_mosquitto_files_refuse_bad_input() -> None:
    # A venue id that cannot own logins (from before ids were checked) gets none, and
    # does not stop the files for everyone else.
    passwd, acl = mosquitto_files([("demo.resort", "gate-a"), ("demo-resort", "gate-a")],
                                  secret=SECRET, bridge_user=BRIDGE, bridge_password="p")
    assert "demo.resort" not in passwd + acl and "demo-resort.gate-a" in passwd
    with pytest.raises(ValueError):
        mosquitto_files([], secret=SECRET, bridge_user="guest-bridge", bridge_password="p")
    with pytest.raises(ValueError):
        mosquitto_files([], secret=b"weak", bridge_user=BRIDGE, bridge_password="p")


# ------------------------------------------------------------- re-issued and revoked


def test_generation_zero_is_the_password_issued_before_reissuing_existed() -> None:
    # Sheets printed before logins could be re-issued must keep working.
    message = b"venuehub/v1 broker password\x00" + b"demo\x00lock-1"
    first = base64.urlsafe_b64encode(hmac.new(SECRET, message, hashlib.sha256).digest())
    assert device_password(SECRET, "demo", "lock-1", 0) == first.decode()[:32]
    assert device_password(SECRET, "demo", "lock-1") == device_password(SECRET, "demo",
                                                                         "lock-1", 0)


def test_each_generation_has_its_own_password() -> None:
    seen = {device_password(SECRET, "demo", "lock-1", n) for n in range(50)}
    seen |= {guest_password(SECRET, "lock-1", n) for n in range(50)}
    assert len(seen) == 100
    with pytest.raises(ValueError):
        device_password(SECRET, "demo", "lock-1", -1)


def test_password_ok_follows_the_logins() -> None:
    auth = BrokerAuth(SECRET, "hub-bridge", "bridge-pw")
    user = device_username("demo", "lock-1")
    old, new = (device_password(SECRET, "demo", "lock-1", n) for n in (0, 1))
    assert password_ok(user, old, auth) and not password_ok(user, new, auth)
    assert password_ok(user, new, auth, {user: 1}) and not password_ok(user, old, auth, {user: 1})
    assert not password_ok(user, old, auth, {user: None})
    assert not password_ok(user, new, auth, {user: None})
    other = device_username("demo", "lock-2")
    assert password_ok(other, device_password(SECRET, "demo", "lock-2"), auth, {user: None})
    assert password_ok("hub-bridge", "bridge-pw", auth, {"hub-bridge": None})  # not the hub's


def test_mosquitto_files_leave_out_revoked_logins_and_use_generations() -> None:
    devices = [("demo", "lock-1"), ("demo", "lock-2")]
    passwd, acl = mosquitto_files(devices, secret=SECRET, bridge_user="hub-bridge",
                                  bridge_password="bridge-pw", guests=["g1", "g2", "bad id"],
                                  logins={"demo.lock-1": None, "guest-g2": 3})
    users = {line.split(":", 1)[0] for line in passwd.splitlines()}
    assert users == {"hub-bridge", "demo.lock-2", "guest-g1", "guest-g2"}
    assert "user demo.lock-1" not in acl
    assert "user guest-g1\ntopic read venuehub/v1/+/guest/g1/notifications" in acl
