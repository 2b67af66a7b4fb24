"""PostgreSQL restarts under a running hub: while it is away every API call is a 503
that says so (never a 500), and once it is back the same process answers again, with no
restart of its own (the pool checks a connection before lending it)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from hub.server import Hub
from tests.conftest import bearer, fresh_postgres, hub_settings, staff_token
from tests.utils import postgres

pytestmark = pytest.mark.postgres


def test_the_api_says_503_while_postgres_is_away_and_answers_once_it_is_back(
        tmp_path: Path, own_postgres: postgres.Cluster) -> None:
    engine = fresh_postgres(own_postgres.url)
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    settings = hub_settings(tmp_path, database_url=url)
    hub = Hub(settings, demo=True)
    hub.start()
    try:
        hub.serve_in_thread()
        assert hub.app is not None
        api = f"http://{settings.http_host}:{settings.http_port}/api/v1"
        headers = bearer(staff_token(hub.app))
        assert httpx.get(f"{api}/guests/guest-01", headers=headers).status_code == 200
        own_postgres.stop("immediate")
        away = httpx.get(f"{api}/guests/guest-01", headers=headers)
        assert away.status_code == 503, away.text
        assert away.json()["reason"] == "database_unavailable"
        assert away.headers["Retry-After"]
        top_up = httpx.post(f"{api}/accounts/wallet-guest-01/topups", headers=headers,
                            json={"amount": 500, "idempotency_key": "while-away"})
        assert top_up.status_code == 503, top_up.text
        own_postgres.start()
        back = httpx.get(f"{api}/guests/guest-01", headers=headers)
        assert back.status_code == 200, back.text
        assert back.json()["id"] == "guest-01"
    finally:
        hub.stop()


def test_a_hub_on_a_clock_far_from_the_databases_refuses_to_start_and_touches_nothing(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime, timedelta

    from hub.db import ClockSkew

    engine = fresh_postgres(postgres_url)
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    settings = hub_settings(tmp_path, database_url=url)
    honest = Hub(settings)
    honest.start()
    honest.stop()
    keys = settings.data_dir / "secrets" / "phone-signing-keys.json"
    before = keys.read_bytes()
    # A year ahead: it would retire the signing key in use and hold every lease a year.
    monkeypatch.setattr("hub.server.utcnow", lambda: datetime.now(UTC) + timedelta(days=365))
    with pytest.raises(ClockSkew) as refused:
        Hub(settings).start()
    assert refused.value.skew > 364 * 86_400 and "ahead of the database's" in str(refused.value)
    assert keys.read_bytes() == before
    # A few seconds off is any machine's clock: it starts.
    monkeypatch.setattr("hub.server.utcnow", lambda: datetime.now(UTC) + timedelta(seconds=5))
    fine = Hub(settings)
    fine.start()
    fine.stop()
