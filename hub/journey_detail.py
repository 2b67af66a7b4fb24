"""Why a presented credential was not trusted, in words staff read: the journey's ``detail``
and a log line.

The reader is told only the reason (``credential_forged``) and a short text: an attacker
learns nothing about which check failed. Staff, and an integrator debugging a proof,
read the check itself in ``GET /events`` (``detail``, e.g. ``proof_wrong_challenge: not
an answer to this tap's challenge``) and in the hub's log. A refused credential is a
decision, not a malformed message, so nothing of it goes to the device's errors topic.
"""

from __future__ import annotations

import logging

from hub.models import CredentialKind
from hub.presented import CredentialProblem, Presented

log = logging.getLogger("hub.credentials")

# Event.detail's length; a longer text is cut (a PyJWT message can quote a header).
MAX_DETAIL = 200

# Problems that point at an attacker or a broken device: WARNING. The rest (a stay that
# has ended or not begun) are the guest's honest mistakes: INFO.
_SUSPICIOUS = frozenset({CredentialProblem.FORGED, CredentialProblem.REPLAYED,
                         CredentialProblem.INSECURE, CredentialProblem.REVOKED})


def detail_of(presented: Presented, problem: CredentialProblem | None, *,
              known: bool) -> str | None:
    """What failed, ``"<check>: <words>"``; None when the credential was trusted as presented.

    ``known`` says whether the presented credential named one of the hub's credentials:
    a phone key that verifies but is not the one its credential carries now (re-issued
    since) is trusted by its signature and still unknown.
    """
    if presented.why is not None:
        return _clean(presented.why)
    if problem is CredentialProblem.REPLAYED:
        if presented.challenge is not None:
            return "proof_replayed: this lock's challenge was answered before"
        return "sun_replayed: the read counter is not above the last one accepted"
    if problem is CredentialProblem.FORGED:
        return "bare_uid: a secure band's UID without its SUN data (a clone)"
    if problem is CredentialProblem.INSECURE:
        if presented.kind is CredentialKind.PHONE_KEY:
            return ("bare_key_id: a phone key's bare id; present the signed key with its "
                    "proof")
        return "plain_uid: this reader takes secure credentials only"
    if problem is None and presented.secure and presented.kind is CredentialKind.PHONE_KEY \
            and not known:
        return ("key_superseded: a genuine signature, but not the key its credential "
                "carries now (issued again since)")
    if problem is not None:
        return problem.value
    return None


def log_refused(problem: CredentialProblem, detail: str | None, *, device_id: str,
                event_id: str, kind: str) -> None:
    """One log line for a credential the hub did not trust at a reader."""
    level = logging.WARNING if problem in _SUSPICIOUS else logging.INFO
    log.log(level, "%s at %s not trusted (%s), event %s: %s", kind, device_id, problem.value,
            _clean(event_id), detail or problem.value)


def _clean(text: str) -> str:
    """One printable line, at most MAX_DETAIL characters: what a device sent (a token's
    header quoted in a library's message) never forges a log line, drives a terminal
    (ESC, BEL, a right-to-left override) or puts a NUL where PostgreSQL stores no NUL."""
    flat = " ".join(text.split())
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x100
                    else f"\\u{ord(c):04x}" for c in flat)
    return shown if len(shown) <= MAX_DETAIL else shown[:MAX_DETAIL - 3] + "..."
