"""The operator's console: the /ui page, its assets, and the JSON it polls (/v1/console).

Plain HTML, CSS and JavaScript shipped in the package (static/), no build step and no CDN.
Every page answer carries a Content-Security-Policy with no inline script allowed: the
page's code comes from its own files, and the admin key it asks for lives in
sessionStorage, sent as X-API-Key, never in a URL or a cookie.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

from daemon.api.middleware import ApiError
from daemon.api.ui.overview import CONSOLE, Console, console_context, console_route
from daemon.api.waiters import Waiters
from daemon.config import Settings
from daemon.store import AsyncJobStore

STATIC = Path(__file__).resolve().parent / "static"
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
# Redoc injects its styles and runs its search in a worker made from a blob.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
            "worker-src blob:; frame-ancestors 'none'; base-uri 'none'")
ASSETS = web.AppKey("ui_assets", dict)


def _assets() -> dict[str, tuple[bytes, str]]:
    """Every file under static/, read once: name -> (bytes, content type)."""
    out = {}
    for path in STATIC.rglob("*"):
        if path.is_file():
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind.endswith("javascript"):
                kind += "; charset=utf-8"
            out[path.relative_to(STATIC).as_posix()] = (path.read_bytes(), kind)
    return out


def _file(request: web.Request, name: str, csp: str) -> web.Response:
    found = request.app[ASSETS].get(name)
    if found is None:
        raise ApiError("not_found", f"no file {name}")
    body, kind = found
    return web.Response(body=body, headers={
        "Content-Type": kind, "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache"})


async def page(request: web.Request) -> web.Response:
    return _file(request, "index.html", PAGE_CSP)


async def asset(request: web.Request) -> web.Response:
    return _file(request, request.match_info["name"], PAGE_CSP)


async def docs_page(request: web.Request) -> web.Response:
    return _file(request, "docs.html", DOCS_CSP)


def setup_console(app: web.Application, settings: Settings, store: AsyncJobStore,
                  waiters: Waiters) -> None:
    app[ASSETS] = _assets()
    app[CONSOLE] = console = Console(settings, store)
    waiters.listeners.append(console.heard)  # the failures, from the one subscription
    app.cleanup_ctx.append(console_context)
    app.router.add_get("/ui", page)
    app.router.add_get("/ui/static/{name:[A-Za-z0-9_.-]+}", asset)
    app.router.add_get("/docs", docs_page)
    app.router.add_get("/v1/console", console_route)
