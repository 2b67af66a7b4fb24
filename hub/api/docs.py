"""The interactive API docs, Swagger UI at /docs and ReDoc at /redoc, served with their
scripts and styles from the hub itself (fastapi-offline's copies): a venue's network may
have no way out, and /docs from a CDN is then a blank page.

Not fastapi-offline's ``FastAPIOffline()``: its pages are closures over the app, and
FastAPI (0.165) keeps every endpoint it has seen in module-level caches of 4,096 entries
each, so every app built that way stayed alive, and with it whatever its state held: a
hub's bridge, its broker's process handles and pipes. A test suite that builds thousands of
apps ran out of file descriptors half-way. These pages are plain functions that find their
app in the request.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/docs-static"  # the docs' scripts, styles and icon
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}  # no badge that calls out to swagger.io
_ASSETS = Path(str(files("fastapi_offline") / "static"))

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI on the app's OpenAPI document."""
    app: FastAPI = request.app
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
        oauth2_redirect_url=f"{root}{app.swagger_ui_oauth2_redirect_url}",
        swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
        swagger_ui_parameters=app.swagger_ui_parameters)


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    """Where Swagger UI's OAuth2 log-in returns to."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc on the app's OpenAPI document, without Google's fonts."""
    app: FastAPI = request.app
    root = _root(request)
    return get_redoc_html(
        openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
        redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png", with_google_fonts=False)


def serve_docs(app: FastAPI) -> None:
    """Add the docs' pages and assets to ``app`` (built with docs_url=redoc_url=None)."""
    app.mount(STATIC_URL, StaticFiles(directory=_ASSETS), name="docs-static")
    app.include_router(router)
