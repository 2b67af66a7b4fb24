"""Refused broker logins into the audit log: who tried to connect as whom, from where.

The broker counts every refusal (``/stats`` ``broker_refusals``); this writes them where
staff look for attempts, one entry per user, address and reason each round, so a flood of
CONNECTs costs a row per second, not a row per packet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.engine import Engine

from hub import crud
from hub.broker_auth import Refusal
from hub.db import session_scope

ACTION = "broker.refused"
_CLIENT_IDS_KEPT = 5


def record_refusals(engine: Engine, refusals: Sequence[Refusal], now: datetime) -> int:
    """Audit ``refusals``, grouped by (reason, username, address); the entries written."""
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for refusal in refusals:
        groups[(refusal.reason, refusal.username, refusal.address)].append(refusal.client_id)
    if not groups:
        return 0
    with session_scope(engine) as session:
        for (reason, username, address), client_ids in groups.items():
            crud.record_audit(
                session, actor="broker", roles=[], action=ACTION,
                target=f"mqtt-user:{username or '(none)'}",
                detail={"reason": reason, "count": len(client_ids), "address": address,
                        "client_ids": sorted(set(client_ids))[:_CLIENT_IDS_KEPT]},
                source="mqtt", at=now)
    return len(groups)
