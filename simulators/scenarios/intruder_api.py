"""The intruder's attacks on accounts and tokens (steps 13-14).

13. an erased guest's token: a throwaway guest of this run gets an app token, is erased,
    and the token is refused (401) from then on;
14. login brute force: wrong passwords for a made-up account until the hub answers 429
    with Retry-After; each failure is audited ``auth.failure``, the refusal
    ``auth.throttled``.

The hub counts failures per client address and per account from that address, and a
right password clears only the account's count. A guessing run from this machine's
127.0.0.1 would make every later log-in from it (the next ``hub-sim`` command's) wait,
longer each run. So when the hub's API is on a loopback address, the guesses come from
another one, ``127.x.y.z``, new each run (Linux routes all of 127/8 to the loopback);
where that cannot be bound, they come from our own address, step 14 runs last, and the
scenario waits out the Retry-After (up to :data:`LONGEST_WAIT_S`) so the next command can
log in.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from simulators.rest import (
    AuditEntry,
    HubApi,
    HubApiError,
    HubUnreachable,
    LoginAnswer,
    LogInAttempts,
)

if TYPE_CHECKING:
    from simulators.scenarios.intruder import Intruder

MAX_GUESSES = 12  # the hub throttles from the sixth failure in a row: twice that is plenty
LONGEST_WAIT_S = 60  # how long the scenario waits out its own address's throttle, at most


# ------------------------------------------------------------------ pure helpers


def guessing_address(api_url: str, pick: Callable[[int], int] = secrets.randbelow) -> str | None:
    """A loopback source address other than 127.0.0.1 to guess from, when the hub's API
    is on an IPv4 loopback address; None otherwise (guess from our own address)."""
    host = urlsplit(api_url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.version != 4 or not address.is_loopback:
        return None
    return f"127.{1 + pick(254)}.{pick(256)}.{1 + pick(254)}"  # never 127.0.0.x


def guessing_verdict(answers: Sequence[LoginAnswer]) -> tuple[str, str]:
    """How a guessing run ended: refused when 429 with Retry-After came before any token."""
    failures = sum(a.status == 401 for a in answers)
    last = answers[-1] if answers else None
    said = f"{failures} × 401"
    if last is None:
        return "not played", "no attempt"
    if any(a.status == 200 for a in answers):
        return "let through", said + ", then a token"
    if last.status == 429:
        said += f", then 429 Retry-After {last.retry_after}s"
        return ("refused" if last.retry_after else "refused for another reason"), said
    if last.status == 401:
        return "let through", said + f": never throttled in {len(answers)} guesses"
    return "refused for another reason", said + f", then HTTP {last.status}: {last.detail}"


def audited(entries: Iterable[AuditEntry], action: str, target: str) -> int:
    return sum(e.action == action and e.target == target for e in entries)


# ------------------------------------------------------------------ 13: erasure


def erased_guest_token(attacker: Intruder) -> None:
    """13a-b: a guest's app token before and after the guest is erased."""
    api = attacker.run.api
    titles = ("13a baseline: guest token", "13b erased guest's token")
    try:
        guest = api.create_guest(f"Intruder decoy {attacker.stamp}", display_name="Decoy")
        token = api.guest_token(guest.id)
    except HubApiError as exc:
        for title in titles:
            attacker.skip(title, "REST", "-", f"no throwaway guest: {exc}")
        return
    where = f"GET /guests/{guest.id}"
    with HubApi(api.base_url, token=token) as app:
        def read() -> int:
            try:
                app.request("GET", f"/guests/{guest.id}")
            except HubApiError as exc:
                return exc.status
            return 200

        attacker.attempt(titles[0], where, "HTTP 200",
                         lambda: (("as expected", "HTTP 200") if (s := read()) == 200
                                  else ("baseline failed", f"HTTP {s}")))

        def after_erasure() -> tuple[str, str]:
            report = api.erase_guest(guest.id)
            status = read()
            entries = api.audit(target=f"guest:{guest.id}")
            erased = audited(entries, "guest.erase", f"guest:{guest.id}")
            seen = audited(entries, "auth.token_refused", f"guest:{guest.id}")
            got = (f"erased ({report.get('credentials_revoked', 0)} credentials revoked, "
                   f"audit guest.erase: {erased}); the old token: HTTP {status}, "
                   f"audit auth.token_refused: {seen}")
            if status < 300:
                return "let through", got
            if status != 401:
                return "refused for another reason", got
            return ("refused" if seen else "not recorded"), got

        attacker.attempt(titles[1], where, "HTTP 401", after_erasure)


# ------------------------------------------------------------------ 14: brute force


def brute_force(attacker: Intruder) -> None:
    """14a-b: guess a password until throttled, then read the audit log."""
    run, api = attacker.run, attacker.run.api
    username = f"intruder-{attacker.stamp}"  # nobody's: the hub answers alike either way
    source = guessing_address(api.base_url)
    answers: list[LoginAnswer] = []

    def guess(address: str | None) -> None:
        with LogInAttempts(api.base_url, local_address=address) as guesser:
            for n in range(1, MAX_GUESSES + 1):
                answers.append(guesser.attempt(username, f"guess-{n}-{secrets.token_hex(4)}"))
                if answers[-1].status != 401:
                    break

    def probe() -> tuple[str, str]:
        nonlocal source
        try:
            guess(source)
        except HubUnreachable:
            if source is None or answers:
                raise
            source = None  # this system cannot send from another loopback address
            guess(source)
        return guessing_verdict(answers)

    attacker.attempt("14a login brute force", f"POST /auth/token from {source or 'here'}",
                     "401 ×5, then 429 Retry-After", probe)
    run.note(f"14: guessed {username!r} from {source or 'this address'}")
    wait = answers[-1].retry_after if answers and answers[-1].status == 429 else None
    if source is None and wait:
        if wait <= LONGEST_WAIT_S:
            run.note(f"14: waiting out the Retry-After of {wait}s on our own address, so "
                     "the next command can log in")
            time.sleep(wait)
        else:
            run.note(f"14: log-ins from this address must wait {wait}s (the hub's backoff)")
    target = f"user:{username}"

    def in_the_log() -> tuple[str, str]:
        entries = api.audit(target=target, limit=200)
        failed, throttled = (audited(entries, "auth.failure", target),
                             audited(entries, "auth.throttled", target))
        want = sum(a.status == 401 for a in answers)
        got = f"auth.failure ×{failed}, auth.throttled ×{throttled}"
        return ("refused" if failed == want and throttled >= 1 and want else "not recorded",
                got)

    attacker.attempt("14b brute force audited", "GET /audit", "each failure and the 429",
                     in_the_log)
