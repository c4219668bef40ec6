"""The operator's view of poison documents: list the quarantine, lift one hash.

A document whose extraction killed its worker MAX_ATTEMPTS times is quarantined by
sha256 for QUARANTINE_TTL (daemon.lua NOTE_DEATH_LUA) and refused at upload with 422
`poison_document`. These routes need an admin key (the list holds documents of every
tenant); the same operations exist on the command line:
`python -m daemon.health.quarantine list|lift SHA256`.
"""

from __future__ import annotations

import re

import structlog
from aiohttp import web

from daemon.api.middleware import ApiError, json_response
from daemon.store import AsyncJobStore

log = structlog.get_logger()

STORE = web.AppKey("quarantine_store", AsyncJobStore)
_SHA256 = re.compile(r"[0-9a-f]{64}")


async def list_quarantine(request: web.Request) -> web.Response:
    entries = await request.app[STORE].quarantine_entries()
    return json_response({"documents": entries, "count": len(entries)})


async def lift(request: web.Request) -> web.Response:
    sha256 = request.match_info["sha256"].lower()
    if not _SHA256.fullmatch(sha256):
        raise ApiError("bad_request", "a quarantine entry is named by a sha256 (64 hex digits)")
    if not await request.app[STORE].lift_quarantine(sha256):
        raise ApiError("not_found", f"{sha256} is not quarantined")
    log.warning("quarantine.lifted", sha256=sha256, by="api")
    return web.Response(status=204)


def setup_quarantine(app: web.Application, store: AsyncJobStore) -> None:
    app[STORE] = store
    app.router.add_get("/v1/quarantine", list_quarantine)
    app.router.add_delete("/v1/quarantine/{sha256}", lift)
