"""Refused broker logins into the audit log: who tried to connect as whom, from where.

The broker counts every refusal (``/stats`` ``broker_refusals``); this writes them where
staff look for attempts, one entry per user, address and reason each round. An address
that tries many users at once (a guessing run, a flood with random names) gets a few
entries and one ``mqtt-user:(many)`` entry with the count and some of the names, so a flood
costs a bounded number of rows a second, not a row per packet. Usernames and client ids
arrive cut to 64 printable characters (hub.broker).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.engine import Engine

from hub.broker_auth import Refusal
from hub.db import session_scope
from hub.store import events

ACTION = "broker.refused"
_SAMPLES = 5  # client ids (or users) named in one entry
_USERS_PER_ADDRESS = 5  # entries of their own per address and round; the rest share one
_ENTRIES_PER_ROUND = 50


def record_refusals(engine: Engine, refusals: Sequence[Refusal], now: datetime) -> int:
    """Audit ``refusals`` (see the module); the number of entries written."""
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for refusal in refusals:
        groups[(refusal.reason, refusal.username, refusal.address)].append(refusal.client_id)
    entries: list[tuple[str, str, dict[str, object]]] = []
    by_address: dict[tuple[str, str], list[tuple[str, list[str]]]] = defaultdict(list)
    for (reason, username, address), client_ids in groups.items():
        by_address[(reason, address)].append((username, client_ids))
    for (reason, address), users in by_address.items():
        users.sort(key=lambda u: -len(u[1]))
        for username, client_ids in users[:_USERS_PER_ADDRESS]:
            entries.append((f"mqtt-user:{username or '(none)'}", reason, {
                "address": address, "count": len(client_ids),
                "client_ids": sorted(set(client_ids))[:_SAMPLES]}))
        rest = users[_USERS_PER_ADDRESS:]
        if rest:
            entries.append(("mqtt-user:(many)", reason, {
                "address": address, "count": sum(len(ids) for _, ids in rest),
                "users": len(rest), "some_users": [u for u, _ in rest[:_SAMPLES]]}))
    if len(entries) > _ENTRIES_PER_ROUND:
        kept, dropped = entries[:_ENTRIES_PER_ROUND - 1], entries[_ENTRIES_PER_ROUND - 1:]
        reasons = Counter(reason for _, reason, _ in dropped)
        kept.append(("mqtt-user:(many)", "+".join(sorted(reasons)), {
            "count": sum(int(str(d["count"])) for _, _, d in dropped),
            "addresses": len({str(d.get("address")) for _, _, d in dropped})}))
        entries = kept
    if not entries:
        return 0
    with session_scope(engine) as session:
        for target, reason, detail in entries:
            events.record_audit(session=session, actor="broker", roles=[], action=ACTION,
                                target=target,
                                detail={"reason": reason, **detail}, source="mqtt", at=now)
    return len(entries)
