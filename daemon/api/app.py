"""The HTTP front: uploads become jobs in Redis; results come back when workers finish.

Run as `python -m daemon.api`. It never parses documents: it streams the upload, checks
its type and size, stores it with one atomic call, and waits for the result through the
done channel (daemon.api.waiters) when the client asked to wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
import uvloop
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from daemon import __version__, webhooks
from daemon.api import disposition
from daemon.api.budget import MemoryBudget, Reservation, UploadSlots
from daemon.api.deadletters import setup_dead_letters
from daemon.api.drain import DrainRate, sample_drain
from daemon.api.keys import METRICS_HOOK, RATE_LIMITER, RETRY_AFTER
from daemon.api.middleware import (
    ApiError,
    auth,
    errors,
    framing,
    hide_server_version,
    json_response,
    request_context,
    tenant_of,
)
from daemon.api.monitoring import setup_monitoring
from daemon.api.openapi import setup_openapi
from daemon.api.quarantine import setup_quarantine
from daemon.api.ratelimit import RateLimiter
from daemon.api.results import (
    cache_fields,
    cache_wanted,
    detected,
    one_page,
    page_number,
    wants_pages,
    with_pages,
)
from daemon.api.tika.routes import setup_tika, tika_listeners
from daemon.api.ui import setup_console
from daemon.api.uploads import (
    BATCH_ROUTE,
    SMALL_BODY,
    Received,
    Upload,
    read_upload,
    reservation,
)
from daemon.api.waiters import Waiters
from daemon.config import DEFAULT_TENANT, ConfigError, Settings
from daemon.connection import RedisTooOld, connect_async, require_redis_version_async
from daemon.documents import formats
from daemon.errors import (
    CallbackRefused,
    EncryptedDocument,
    PoisonDocument,
    UnsupportedFormat,
)
from daemon.logs import configure_logging
from daemon.store import (
    FINAL_STATES,
    AsyncJobStore,
    DeadLetters,
    Quarantined,
    ensure_group_async,
    job_key,
    public_job,
)

log = structlog.get_logger()

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", AsyncJobStore)
WAITERS = web.AppKey("waiters", Waiters)
UPLOAD_BUDGET = web.AppKey("upload_budget", MemoryBudget)
UPLOAD_SLOTS = web.AppKey("upload_slots", UploadSlots)
DRAIN = web.AppKey("drain", DrainRate)

EXIT_CONFIG = 2  # refused to start: the configuration is unsafe or invalid
CALLBACK_RESOLVE_TIMEOUT = 5.0  # seconds a callback_url's host may take to resolve

# What a route may change on the upload path: how the body is read, how its type is told.
UploadReader = Callable[[web.Request, Settings, MemoryBudget, Reservation | None],
                        Awaitable[Received]]
# (request, filename, bytes) -> (format, `method=`, extractor family)
TypeCheck = Callable[[web.Request, str | None, bytearray], tuple[formats.Format, str, str]]


# --- routes ---------------------------------------------------------------------------
async def health(_request: web.Request) -> web.Response:
    """Liveness: the process answers. Deliberately independent of Redis."""
    return json_response({"status": "pass", "version": __version__})


async def list_formats(_request: web.Request) -> web.Response:
    return json_response({"formats": formats.supported_formats()})


async def detect(request: web.Request) -> web.Response:
    """What an upload is, read and checked as POST /v1/jobs would; nothing is queued."""
    return json_response(await _accept(request, "", read_upload, _check_type, queue=False))


async def submit_job(request: web.Request) -> web.Response:
    wait = _wait_seconds(request, default=0.0)  # a bad ?wait= must not leave a job behind
    job = await _accept_and_wait(request, wait)
    return _job_response(request, job)


async def submit_batch(request: web.Request) -> web.Response:
    """Several `file` parts, one job each, stored in one Redis call; answered in request
    order, a refused part as an entry with its own error. 200 once every job is final."""
    wait = _wait_seconds(request, default=0.0)
    jobs = await _accept_batch(request, wait)
    accepted = sum(job["id"] is not None for job in jobs)
    finished = all(job["state"] in FINAL_STATES for job in jobs if job["id"] is not None)
    return json_response({"jobs": jobs, "accepted": accepted, "refused": len(jobs) - accepted},
                         status=200 if finished else 202)


async def extract(request: web.Request) -> web.Response:
    """Upload and wait: the text itself, or 202 + job JSON if it did not finish in time."""
    wait = _wait_seconds(request, default=request.app[SETTINGS].extract_wait)
    job = await _accept_and_wait(request, wait)
    if job["state"] not in FINAL_STATES:
        return _job_response(request, job)
    if job["state"] == "failed":
        raise ApiError(job["error"]["code"] or "internal_error", job["error"]["message"] or "",
                       status=422, extra={"job_id": job["id"]})
    if "application/json" in request.headers.get("Accept", ""):
        return json_response(job)
    return web.Response(text=job.get("text") or "", content_type="text/plain",
                        charset="utf-8", headers={"X-Job-ID": job["id"]})


async def get_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    wait = _wait_seconds(request, default=0.0)
    found = None
    if wait > 0:
        await _check_owner(request, job_id)  # before waiting: a foreign job is no wait
        job = await request.app[WAITERS].wait(job_id, wait)
    else:
        found = await request.app[STORE].read(job_id)
        job = public_job(*_owned(request, job_id, found)) if found else None
    if wants_pages(request):
        job = await with_pages(request.app[STORE], job_id, job, found)
    if job is None:
        raise _no_job(job_id)
    return json_response(job, status=200)


async def get_text(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    page = page_number(request)
    found = await request.app[STORE].read(job_id)
    if found is None:
        raise _no_job(job_id)
    record, text = _owned(request, job_id, found)
    job = public_job(record)
    if job["state"] == "failed":
        raise ApiError("job_failed", f"the job failed: {job['error']['code']}",
                       extra={"job_id": job_id, "job_error": job["error"]})
    if job["state"] != "done":
        raise ApiError("job_not_finished", f"the job is {job['state']}", retry_after=1)
    if page is not None:
        text = one_page(job_id, record, text or "", page)
    return web.Response(text=text or "", content_type="text/plain", charset="utf-8")


async def delete_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    await _check_owner(request, job_id)
    if not await request.app[STORE].delete(job_id):
        raise _no_job(job_id)
    log.info("job.deleted", job_id=job_id)
    return web.Response(status=204)


# --- the upload path ------------------------------------------------------------------
async def _accept_and_wait(request: web.Request, wait: float, *,
                           read: UploadReader = read_upload,
                           check_type: TypeCheck | None = None) -> dict:
    """Accept the upload; with `wait`, return the job once final or when `wait` passes.

    Every route that makes a job comes through here (the Tika dialect too, with its own
    `read` and `check_type`): one queue, one set of limits for all."""
    job_id = uuid.uuid4().hex
    if wait <= 0:
        return await _accept(request, job_id, read, check_type or _check_type)
    waiters = request.app[WAITERS]
    # Listening before the job exists: its done message cannot come before we listen,
    # and no first look in Redis is needed.
    registered = waiters.register(job_id)
    try:
        queued = await _accept(request, job_id, read, check_type or _check_type)
        return await waiters.wait(job_id, wait, registered=registered, current=queued) or queued
    finally:
        waiters.discard(job_id, registered)


async def _accept(request: web.Request, job_id: str, read: UploadReader,
                  check_type: TypeCheck, *, queue: bool = True) -> dict:
    """Read, check and store one upload; returns the queued job's JSON (the job done at
    once when the result cache served it; what it is, without `queue`)."""
    store, settings = request.app[STORE], request.app[SETTINGS]
    use_cache = cache_wanted(request, settings)
    query_callback = await _callback_url(request, request.query.get("callback_url"))
    async with _upload(request, read) as received:
        upload = received.files[0]
        if not queue:
            fmt, _method, family = check_type(request, upload.filename, upload.data)
            return detected(fmt, family)
        callback = await _callback_url(request, received.fields.get("callback_url"))
        record = await _record(request, job_id, upload, callback or query_callback,
                               check_type)
        request["job_id"] = job_id
        submitted = await store.submit(record, upload.data, use_cache=use_cache)
    # Logged on the request's own line (one line per request, not two).
    request["accepted"] = {"format": record["ext"], "bytes": record["size"],
                           "extract_method": record["method"] or None,
                           "cached": submitted.cached}
    if submitted.cached:
        return await store.get(job_id) or _queued_view(record)
    return _queued_view(record)


async def _accept_batch(request: web.Request, wait: float) -> list[dict]:
    """Accept a batch; with `wait`, return its jobs once all are final or `wait` passes."""
    waiters = request.app[WAITERS]
    registered: dict[str, asyncio.Future] = {}
    try:
        entries = await _store_batch(request, registered if wait > 0 else None)
        if registered:
            return await waiters.wait_many(entries, wait, registered)
        return entries
    finally:
        for job_id, future in registered.items():
            waiters.discard(job_id, future)


async def _store_batch(request: web.Request,
                       registered: dict[str, asyncio.Future] | None) -> list[dict]:
    """Read, check each part, store the good ones in one call: the batch's entries.

    With `registered`, each job's waiter is registered there before it is stored. The
    upload slot, the memory share and the bytes are all let go when this returns, so a
    client waiting for its results holds none of them."""
    settings, waiters = request.app[SETTINGS], request.app[WAITERS]
    query_callback = await _callback_url(request, request.query.get("callback_url"))
    entries: list[dict] = []
    good: list[tuple[dict, bytes | bytearray]] = []
    read = functools.partial(read_upload, max_files=settings.batch_max_files)
    async with _upload(request, read) as received:
        callback = await _callback_url(request, received.fields.get("callback_url"))
        for upload in received.files:
            try:
                record = await _record(request, uuid.uuid4().hex, upload,
                                       callback or query_callback, _check_type)
            except ApiError as exc:
                entries.append(_refused(formats.safe_display_name(upload.filename),
                                        len(upload.data), exc))
                continue
            good.append((record, upload.data))
            entries.append(_queued_view(record))
        if registered is not None:
            registered.update((r["id"], waiters.register(r["id"])) for r, _ in good)
        if good:
            refused = await _submit_all(request.app[STORE], good)
            if refused:
                if registered is not None:
                    for job_id in refused:
                        waiters.discard(job_id, registered.pop(job_id))
                records = {record["id"]: record for record, _ in good}
                entries = [_refused_as_poison(records[entry["id"]])
                           if entry["id"] in refused else entry for entry in entries]
                good = [(record, data) for record, data in good
                        if record["id"] not in refused]
    request["accepted"] = {"files": len(entries), "jobs": len(good),
                           "bytes": sum(len(data) for _, data in good)}
    return entries


async def _submit_all(store: AsyncJobStore, jobs: list[tuple[dict, bytes | bytearray]]
                      ) -> set[str]:
    """Submit the batch's jobs; the ids of those refused as quarantined documents (the
    rest are stored then, in a second call: a rare path, for a batch with poison in it)."""
    try:
        await store.submit_many(jobs)
        return set()
    except Quarantined as exc:
        refused = set(exc.job_ids)
    rest = [(record, data) for record, data in jobs if record["id"] not in refused]
    if rest:
        refused |= await _submit_all(store, rest)
    return refused


def _refused_as_poison(record: dict) -> dict:
    poison = PoisonDocument(record["sha256"])
    return _refused(record["filename"], record["size"], ApiError(poison.code, str(poison)))


def _refused(filename: str, size: int, error: ApiError) -> dict:
    """A batch entry for a part that is no job: why, in the errors' usual shape."""
    return {"id": None, "state": "refused", "filename": filename, "bytes": size,
            "error": {"code": error.code, "message": str(error), "status": error.status}}


@contextlib.asynccontextmanager
async def _upload(request: web.Request, read: UploadReader) -> AsyncIterator[Received]:
    """The request's files, read under one upload slot and one memory share, both held
    until the block ends (the bytes are in Redis or refused by then)."""
    app = request.app
    settings, budget = app[SETTINGS], app[UPLOAD_BUDGET]
    most = reservation(request, settings)
    slots, key_id = app[UPLOAD_SLOTS], request.get("key_id", -1)
    if not slots.take(key_id):
        raise ApiError("rate_limited", f"more than {slots.per_key} uploads at once with this "
                                       "key", retry_after=1)
    share = budget.open(most) if most > SMALL_BODY else None
    try:
        yield await read(request, settings, budget, share)
    finally:
        slots.give_back(key_id)
        if share is not None:
            await budget.close(share)


async def _record(request: web.Request, job_id: str, upload: Upload, callback: str | None,
                  check_type: TypeCheck) -> dict:
    """The job record of one checked upload (ApiError when the upload is refused): its
    type, its tenant, its document's hash (the result cache's and the quarantine's key)."""
    if not upload.data:
        raise ApiError("bad_request", "the upload is empty")
    fmt, method, family = check_type(request, upload.filename, upload.data)
    record = {
        "id": job_id, "state": "queued", "attempts": "0", "ext": fmt.ext,
        "family": family, "method": method,
        "filename": formats.safe_display_name(upload.filename), "size": len(upload.data),
        "created_at": f"{time.time():.6f}", "request_id": request["request_id"],
        "tenant": tenant_of(request),
    }
    if callback:
        record["callback_url"] = callback
    settings = request.app[SETTINGS]
    # The hash is also the quarantine's key: SUBMIT refuses a quarantined document.
    record.update(await cache_fields(record, upload.data, settings))
    return record


async def _callback_url(request: web.Request, url: str | None) -> str | None:
    """`url` if the service may call it (CALLBACK_ALLOW), else a 400 that says why."""
    if not url:
        return None
    policy = request.app[SETTINGS].callback_policy
    try:
        target = webhooks.parse_url(url)
        policy.check_target(target)
        try:
            async with asyncio.timeout(CALLBACK_RESOLVE_TIMEOUT):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            raise CallbackRefused(f"callback host {target.host!r} does not resolve") from exc
        policy.check_addresses(target.host, webhooks.addresses_of(infos))
    except CallbackRefused as exc:
        raise ApiError(exc.code, str(exc)) from exc
    return url


def _check_type(request: web.Request, filename: str | None,
                data: bytes | bytearray) -> tuple[formats.Format, str, str]:
    """The upload's format, the `method=` asked for, and the extractor family for both."""
    declared = request.query.get("extension") or None
    try:
        fmt = formats.detect_bytes(filename, data, declared)
    except UnsupportedFormat as exc:
        raise ApiError("unsupported_media_type", str(exc), extra={
            "supported": sorted(formats.FORMATS)}) from exc
    except EncryptedDocument as exc:
        raise ApiError("encrypted_document", str(exc), status=422) from exc
    method = request.query.get("method", "")
    try:
        family = formats.family_for(fmt.ext, method)
    except formats.InvalidMethod as exc:
        raise ApiError("invalid_method", str(exc)) from exc
    return fmt, method, family


def _queued_view(record: dict) -> dict:
    return public_job({k: str(v) for k, v in record.items()})


def _job_response(request: web.Request, job: dict) -> web.Response:
    finished = job["state"] in FINAL_STATES
    location = f"/v1/jobs/{job['id']}"
    return json_response(job, status=200 if finished else 202, headers={"Location": location})


def _wait_seconds(request: web.Request, default: float) -> float:
    raw = request.query.get("wait")
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ApiError("bad_request", "wait must be a number of seconds") from exc
    if not math.isfinite(value) or value < 0:
        raise ApiError("bad_request", "wait must be a number of seconds >= 0")
    return min(value, request.app[SETTINGS].max_wait)


async def _check_owner(request: web.Request, job_id: str) -> None:
    """404 for a job of another tenant: the same answer as for no job, so an id of
    another client's job tells nothing, not even that it exists."""
    state, owner = await request.app[STORE].client.hmget(job_key(job_id), "state", "tenant")
    owner_name = owner.decode() if isinstance(owner, bytes) else owner
    if state is not None and not _is_owner(request, owner_name):
        raise _no_job(job_id)


def _owned(request: web.Request, job_id: str, found: tuple[dict[str, str], str | None]
           ) -> tuple[dict[str, str], str | None]:
    """`found` (a job read whole) if it is the request's tenant's: _check_owner's rule
    without its round trip."""
    if not _is_owner(request, found[0].get("tenant")):
        raise _no_job(job_id)
    return found


def _is_owner(request: web.Request, owner: str | None) -> bool:
    # A job stored before tenants has none: it was the default tenant's.
    return (owner or DEFAULT_TENANT) == tenant_of(request)


def _no_job(job_id: str) -> ApiError:
    return ApiError("not_found", f"no job {job_id} (jobs expire after RESULT_TTL)")


def _job_id(request: web.Request) -> str:
    job_id = request.match_info["job_id"]
    if not (len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)):
        raise ApiError("not_found", "no such job")
    return job_id


class NoParserTracebacks(logging.Filter):
    """aiohttp logs a rejected request with a traceback quoting the raw header line (an API
    key among them); the 400 is the answer, the traceback adds only risk."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HttpProcessingError):
            record.msg = f"rejected a malformed request: {type(record.exc_info[1]).__name__}"
            record.args = ()
            record.exc_info = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


# --- the app --------------------------------------------------------------------------
async def _redis_context(app: web.Application) -> AsyncIterator[None]:
    try:
        await require_redis_version_async(app[STORE].client)
        await ensure_group_async(app[STORE].client)
    except RedisTooOld as exc:  # its commands would fail job by job: refuse to start
        log.error("api.refused", reason=str(exc))
        sys.exit(EXIT_CONFIG)
    except Exception as exc:
        log.warning("redis.unavailable", error=str(exc))
    await app[WAITERS].start()
    sampler = asyncio.create_task(sample_drain(app[DRAIN], app[STORE].client))
    yield
    sampler.cancel()
    await app[WAITERS].close()
    await app[STORE].client.aclose()


async def _wake_waiters(app: web.Application) -> None:
    # On shutdown, long waits answer at once (202 + job) instead of holding the stop up.
    app[WAITERS].release_all()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[request_context, framing, errors, auth(settings)],
                          client_max_size=settings.max_content_length)
    app[SETTINGS] = settings
    app[UPLOAD_BUDGET] = MemoryBudget(settings.upload_memory_mb * 1024 * 1024)
    app[UPLOAD_SLOTS] = UploadSlots(settings.max_uploads_per_key)
    app[DRAIN] = drain = DrainRate()
    app[RETRY_AFTER] = drain.retry_after
    app[METRICS_HOOK] = None
    # Clients connect lazily: building them here opens no socket.
    client = connect_async(settings)
    app[STORE] = store = AsyncJobStore(client, settings)
    app[WAITERS] = Waiters(client, store)
    app[RATE_LIMITER] = (RateLimiter(client, settings.rate_limit_per_minute)
                         if settings.rate_limit_per_minute > 0 else None)
    app.cleanup_ctx.append(_redis_context)
    app.on_shutdown.append(_wake_waiters)
    app.router.add_get("/health", health)
    setup_monitoring(app, settings, store)
    app.router.add_get("/v1/formats", list_formats)
    app.router.add_post("/v1/jobs", submit_job)
    app.router.add_post(BATCH_ROUTE, submit_batch)
    app.router.add_post("/v1/extract", extract)
    app.router.add_post("/v1/detect", detect)
    app.router.add_get("/v1/jobs/{job_id}", get_job)
    app.router.add_get("/v1/jobs/{job_id}/text", get_text)
    app.router.add_delete("/v1/jobs/{job_id}", delete_job)
    setup_tika(app, settings, store, _accept_and_wait)
    setup_quarantine(app, store)
    setup_dead_letters(app, DeadLetters(client))
    setup_console(app, settings, store, app[WAITERS])
    setup_openapi(app)
    return app


def main() -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        configure_logging("api")
        log.error("api.refused", reason=str(exc))  # the message never quotes a key
        sys.exit(EXIT_CONFIG)
    configure_logging("api", secrets=tuple(k.secret for k in settings.access_keys))
    # aiohttp's access log would duplicate our own one-line-per-request event.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(NoParserTracebacks())
    hide_server_version()
    disposition.install()  # every multipart part's header: see daemon.api.disposition
    if settings.auth_required and not settings.access_keys:
        log.error("api.refused", reason="API_KEY is empty; set it (scripts/run writes one to "
                                        ".env) or set ALLOW_NO_AUTH=1 for local use")
        sys.exit(EXIT_CONFIG)
    if not settings.auth_required:
        log.warning("api.auth_disabled", reason="ALLOW_NO_AUTH is set: anyone who can reach "
                                                "the port can use the service")
    log.info("api.starting", host=settings.host, port=settings.port, version=__version__)
    # uvloop: the same asyncio API with a faster loop (libuv); measured 0.05-0.13 ms less
    # api CPU per job, a tenth of what the api spends on a tiny one.
    web.run_app(create_app(settings), host=settings.host, port=settings.port,
                sock=tika_listeners(settings), shutdown_timeout=settings.shutdown_timeout,
                print=None, access_log=None,
                handle_signals=True, loop=uvloop.new_event_loop())

