"""The interactive API docs work offline: every script, style and icon comes from the hub."""

from __future__ import annotations

import gc
import re
import weakref
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hub.api.main import create_app
from hub.config import Settings


class _Resources(HTMLParser):
    """The URLs a page makes the browser load: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


@pytest.fixture
def client() -> Iterator[TestClient]:
    engine = sa.create_engine("sqlite://")
    with TestClient(create_app(engine=engine, settings=Settings())) as test_client:
        yield test_client
    engine.dispose()


@pytest.mark.parametrize(("page", "needs"), [
    ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css"}),
    ("/redoc", {"redoc.standalone.js"}),
])
def test_docs_load_only_what_the_hub_serves(client: TestClient, page: str,
                                           needs: set[str]) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    # Nothing from elsewhere: no CDN, no fonts, no validator badge.
    assert re.search(r"(https?:)?//\w", html) is None, html
    parser = _Resources()
    parser.feed(html)
    assert {url.rsplit("/", 1)[-1] for url in parser.urls} >= needs
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url  # the real file, not an error page
    assert "validatorUrl" not in html or '"validatorUrl": null' in html


def test_docs_scripts_are_javascript_and_may_be_cached(client: TestClient) -> None:
    html = client.get("/docs").text
    parser = _Resources()
    parser.feed(html)
    [script] = [url for url in parser.urls if url.endswith(".js")]
    asset = client.get(script)
    assert "javascript" in asset.headers["content-type"]
    assert "SwaggerUIBundle" in asset.text
    # 1.5 MB of the docs' own code, the same for everyone: a browser may keep it.
    assert asset.headers.get("cache-control") != "no-store"
    # The API's answers still may not be kept.
    assert client.get("/openapi.json").headers["cache-control"] == "no-store"


def test_an_app_is_freed_once_dropped() -> None:
    # FastAPI keeps every endpoint it has seen in module-level caches: docs pages that closed
    # over their app (fastapi-offline's) kept every app alive, and a hub's app holds its
    # bridge and through it the whole hub: a test run ran out of file descriptors.
    engine = sa.create_engine("sqlite://")
    app = create_app(engine=engine, settings=Settings())
    with TestClient(app) as test_client:
        assert test_client.get("/docs").status_code == 200
        assert test_client.get("/redoc").status_code == 200
    gone = weakref.ref(app)
    del app, test_client
    gc.collect()
    assert gone() is None
    engine.dispose()
