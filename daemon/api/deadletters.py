"""The dead-letter administration routes: list, read, replay and purge, one or by code.

Admin keys only (the `/v1/dead-letters` prefix is in middleware.ADMIN_PREFIXES). Every
action that changes something writes one `audit` log line naming the key's tenant, never
the key. The atomic steps are `daemon.store.DeadLetters` (scripts in `daemon.lua`).
"""

from __future__ import annotations

import structlog
from aiohttp import web

from daemon.api.middleware import ApiError, json_response, tenant_of
from daemon.errors import ERROR_CODES
from daemon.store import DeadLetters, ReplayRefused, is_entry_id

log = structlog.get_logger()

DEAD_LETTERS = web.AppKey("dead_letters", DeadLetters)
PAGE_DEFAULT = 50
PAGE_MAX = 200
# The route takes only what looks like an id, so /v1/dead-letters/replay is never one.
DEAD_ID_ROUTE = "{dead_id:[0-9]+-[0-9]+}"
REFUSALS = {
    "gone": "no such dead letter",
    "no_payload": "the job's document is gone (deleted by its client): it cannot be replayed",
    "busy": "the job is queued or running already",
    "quarantined": "the document is quarantined (it took its worker down on every "
                   "attempt): lift it first with DELETE /v1/quarantine/{sha256}",
}


def audit(request: web.Request, action: str, **fields: object) -> None:
    """The one line an admin action leaves: who (the key's tenant name), what, on what."""
    log.info("audit", action=action, tenant=tenant_of(request), **fields)


def _dead_id(request: web.Request) -> str:
    dead_id = request.match_info["dead_id"]
    if not is_entry_id(dead_id):
        raise ApiError("not_found", f"no dead letter {dead_id!r} (ids look like "
                                    "1700000000000-0)")
    return dead_id


def _code(request: web.Request, *, required: bool = False) -> str | None:
    code = request.query.get("code")
    if code is None and required:
        raise ApiError("bad_request", "code is required: the error code whose dead letters "
                                      "to act on, or * for all of them")
    if code is not None and code != "*" and code not in ERROR_CODES:
        raise ApiError("bad_request", f"unknown error code {code!r}")
    return None if code == "*" else code


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", str(PAGE_DEFAULT))
    if not raw.isdigit() or not 1 <= int(raw) <= PAGE_MAX:
        raise ApiError("bad_request", f"limit must be a whole number from 1 to {PAGE_MAX}")
    return int(raw)


async def list_dead_letters(request: web.Request) -> web.Response:
    limit = _limit(request)
    before = request.query.get("before")
    if before is not None and not is_entry_id(before):
        raise ApiError("bad_request", "before must be a dead letter id (as `next` gives it)")
    store = request.app[DEAD_LETTERS]
    letters, cursor = await store.page(limit=limit, before=before, code=_code(request))
    return json_response({"dead_letters": letters, "next": cursor,
                          "total": await store.count()})


async def get_dead_letter(request: web.Request) -> web.Response:
    dead_id = _dead_id(request)
    letter = await request.app[DEAD_LETTERS].get(dead_id)
    if letter is None:
        raise ApiError("not_found", f"no dead letter {dead_id}")
    return json_response(letter)


async def replay_dead_letter(request: web.Request) -> web.Response:
    dead_id = _dead_id(request)
    try:
        job_id = await request.app[DEAD_LETTERS].replay(dead_id, tenant_of(request))
    except ReplayRefused as exc:
        status = 404 if exc.reason == "gone" else 409
        code = "not_found" if exc.reason == "gone" else "not_replayable"
        extra = {"job_id": exc.job_id or None, **({"sha256": exc.sha256} if exc.sha256
                                                  else {})}
        raise ApiError(code, REFUSALS[exc.reason], status=status, extra=extra) from exc
    audit(request, "dead_letter.replay", dead_letter_id=dead_id, job_id=job_id)
    return json_response({"id": dead_id, "job_id": job_id, "state": "queued"}, status=202,
                         headers={"Location": f"/v1/jobs/{job_id}"})


async def delete_dead_letter(request: web.Request) -> web.Response:
    dead_id = _dead_id(request)
    job_id = await request.app[DEAD_LETTERS].purge(dead_id)
    if job_id is None:
        raise ApiError("not_found", f"no dead letter {dead_id}")
    audit(request, "dead_letter.purge", dead_letter_id=dead_id, job_id=job_id)
    return web.Response(status=204)


async def bulk_replay(request: web.Request) -> web.Response:
    code = _code(request, required=True)
    store = request.app[DEAD_LETTERS]
    replayed, skipped = [], []
    for dead_id in await store.ids(code):
        try:
            replayed.append(await store.replay(dead_id, tenant_of(request)))
        except ReplayRefused as exc:
            skipped.append({"id": dead_id, "reason": exc.reason})
    audit(request, "dead_letter.bulk_replay", code=code or "*", replayed=len(replayed),
          skipped=len(skipped))
    return json_response({"code": code or "*", "replayed": replayed, "skipped": skipped})


async def bulk_purge(request: web.Request) -> web.Response:
    code = _code(request, required=True)
    store = request.app[DEAD_LETTERS]
    purged = [job for dead_id in await store.ids(code)
              if (job := await store.purge(dead_id)) is not None]
    audit(request, "dead_letter.bulk_purge", code=code or "*", purged=len(purged))
    return json_response({"code": code or "*", "purged": purged})


def setup_dead_letters(app: web.Application, store: DeadLetters) -> None:
    app[DEAD_LETTERS] = store
    app.router.add_get("/v1/dead-letters", list_dead_letters)
    app.router.add_post("/v1/dead-letters/replay", bulk_replay)
    app.router.add_post("/v1/dead-letters/purge", bulk_purge)
    app.router.add_get(f"/v1/dead-letters/{DEAD_ID_ROUTE}", get_dead_letter)
    app.router.add_delete(f"/v1/dead-letters/{DEAD_ID_ROUTE}", delete_dead_letter)
    app.router.add_post(f"/v1/dead-letters/{DEAD_ID_ROUTE}/replay", replay_dead_letter)
