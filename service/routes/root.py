"""The addresses around the API: ``/`` sends people to the dashboard, Swagger UI's files
are served from the package (``/docs`` works on a device without internet), and a path
with a trailing slash is the path without it.

None of these are API operations: they stay out of the OpenAPI schema, and the files need
no token (they hold no data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.routes import ApiError

router = APIRouter(include_in_schema=False)

SWAGGER = Path(__file__).resolve().parent.parent / "dashboard" / "vendor" / "swagger-ui"
#: Swagger UI's files, under /docs/ (nothing else there is served).
SWAGGER_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
}
#: Pages whose links are relative to themselves: their address with a trailing slash is
#: redirected (so the links resolve), not served.
PAGES = ("/dashboard/",)

_LANDING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgecl</title></head>
<body><p>edgecl: <a href="dashboard">dashboard</a> · <a href="docs">API docs</a> ·
<a href="stats">stats</a></p></body></html>
"""


@router.get("/", response_class=HTMLResponse)
async def landing() -> HTMLResponse:
    """To the dashboard (a browser follows at once; the body has the links for others)."""
    # Relative, so that it holds behind a proxy's path prefix; a #token=... fragment is
    # kept by the browser across the redirect.
    return HTMLResponse(_LANDING, 307, {"Location": "dashboard"})


@router.get("/docs/{name}", response_class=FileResponse)
async def swagger_file(name: str) -> FileResponse:
    if name not in SWAGGER_FILES:
        raise ApiError(404, f"no docs file {name!r}")
    # The files change only with the package: a day of caching is safe.
    headers = {"Cache-Control": "public, max-age=86400"}
    return FileResponse(SWAGGER / name, media_type=SWAGGER_FILES[name], headers=headers)


class TrailingSlash:
    """``POST /predict/`` is ``POST /predict``: the path is rewritten before routing, so
    a client that follows no redirect (``curl -X POST`` without ``-L``) gets the answer,
    and the schema keeps one operation per route. :data:`PAGES` are redirected instead."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or len(path) < 2 or not path.endswith("/"):
            await self.app(scope, receive, send)
            return
        bare = path.rstrip("/") or "/"
        if path in PAGES:
            query = scope.get("query_string", b"").decode("latin-1")
            target = bare + (f"?{query}" if query else "")  # the path holds any root_path
            response = HTMLResponse("", 308, {"Location": target})
            await response(scope, receive, send)
            return
        raw: bytes = scope.get("raw_path") or path.encode()
        rewritten: dict[str, Any] = {**scope, "path": bare, "raw_path": raw.rstrip(b"/") or b"/"}
        await self.app(rewritten, receive, send)
