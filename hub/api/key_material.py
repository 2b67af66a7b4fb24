"""Publishing the venues' key material (signed JWKS and revocation lists) from the API,
once the request that changed it has committed."""

from __future__ import annotations

from fastapi import BackgroundTasks, Request
from sqlmodel import Session

from hub import keyring
from hub.api.deps import get_publisher, publish_after_commit
from hub.models import utcnow


def publish_key_material(session: Session, request: Request, tasks: BackgroundTasks) -> None:
    """The retained JWKS and revocation list of every venue, again, after this request."""
    session.flush()
    messages = keyring.key_material(session, request.app.state.signing_keys, utcnow())
    publish_after_commit(tasks, get_publisher(request), messages, retain=True)
