"""The Tika Server 3.x routes at the server root, on the api's one upload path.

Each route that extracts calls the api's accept-and-wait (daemon.api.app) with Tika's
reader and type check (daemon.api.tika.intake), so the queue, workers, limits, guards,
breakers, keys and tenants of /v1 apply unchanged, and waits up to TIKA_WAIT. Then the
job is answered in Tika's shape:

  200  parsed (and for a type no one can tell: empty content, as Tika)
  422  the document cannot be parsed (/tika, /meta); on /rmeta a 200 whose object holds
       X-TIKA:EXCEPTION:container_exception = textractd's code and message
  503  + Retry-After: not finished within TIKA_WAIT, an extractor unavailable, the queue
       full or Redis down (the last two from the errors middleware, as on /v1)
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable
from typing import NamedTuple, Protocol

import orjson
import structlog
from aiohttp import web

from daemon import __version__
from daemon.api.budget import MemoryBudget, Reservation
from daemon.api.middleware import ApiError, json_response
from daemon.api.tika.access import LOOPBACK
from daemon.api.tika.intake import (
    ENCRYPTED_MIME,
    Refused,
    TypeCheck,
    TypedOnly,
    read_tika_upload,
    tika_type_check,
)
from daemon.api.tika.metadata import Parsed, as_csv, tika_metadata, with_content
from daemon.api.tika.render import xhtml
from daemon.api.uploads import Received
from daemon.config import Settings
from daemon.documents.formats import FORMATS
from daemon.store import FINAL_STATES, AsyncJobStore, job_key

log = structlog.get_logger()

OCTET_STREAM = "application/octet-stream"
RETRY_LATER = 10  # Retry-After, seconds, when a job is still running or its tool is down
# A failed job's codes that say "try later" (the machinery), not "this document".
TRY_LATER_CODES = frozenset({"extractor_unavailable", "extractor_failed", "disk_full"})
# Tika's content handlers; `main` (boilerpipe's main text) is plain text here.
HANDLERS = {"text": "text", "main": "text", "html": "html", "xml": "xml", "ignore": "ignore"}
DEFAULT_HANDLER = "xml"  # Tika's default for /rmeta and the JSON of /tika
TEXT_OFFERS = ("text/plain", "text/html", "application/xhtml+xml", "text/xml",
               "application/xml", "application/json")


class Accept(Protocol):
    """daemon.api.app's accept-and-wait: the upload path every job takes."""

    def __call__(self, request: web.Request, wait: float, *, read: _Reader,
                 check_type: TypeCheck) -> Awaitable[dict]: ...


class _Reader(Protocol):
    def __call__(self, request: web.Request, settings: Settings, budget: MemoryBudget,
                 share: Reservation | None) -> Awaitable[Received]: ...


class TikaContext(NamedTuple):
    settings: Settings
    store: AsyncJobStore
    accept: Accept


TIKA = web.AppKey("tika", TikaContext)


# --- one request's document -----------------------------------------------------------
async def parse(request: web.Request, *, detect_only: bool = False) -> Parsed:
    """The upload through the api's path, waited for up to TIKA_WAIT."""
    ctx = request.app[TIKA]
    wait = ctx.settings.tika_wait
    try:
        job = await ctx.accept(request, wait, read=read_tika_upload,
                               check_type=tika_type_check(detect_only=detect_only))
    except TypedOnly as exc:
        return Parsed(exc.mime, "", None)
    except Refused as exc:
        return Parsed(ENCRYPTED_MIME, "", None, failure=(exc.code, str(exc)))
    if job["state"] not in FINAL_STATES:
        # A Tika client has no job to poll: 503 + Retry-After, the job runs on.
        raise ApiError("job_not_finished", f"the document did not finish within TIKA_WAIT "
                                           f"({wait:g} s); it is still being extracted",
                       status=503, retry_after=RETRY_LATER, extra={"job_id": job["id"]})
    fmt = FORMATS.get(job.get("format") or "")
    mime = fmt.mime if fmt else OCTET_STREAM
    if job["state"] == "failed":
        code = job["error"]["code"] or "internal_error"
        message = job["error"]["message"] or ""
        if code in TRY_LATER_CODES:
            raise ApiError(code, message, status=503, retry_after=RETRY_LATER,
                           extra={"job_id": job["id"]})
        return Parsed(mime, "", job, failure=(code, message))
    return Parsed(mime, job.get("text") or "", job,
                  page_ends=await _page_ends(ctx.store, job["id"]))


async def _page_ends(store: AsyncJobStore, job_id: str) -> list[int] | None:
    # Stored on the job by the pages feature; a job without it has no known pages.
    raw = await store.client.hget(job_key(job_id), "page_ends")
    try:
        ends = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
    return ends if isinstance(ends, list) else None


def _parsed_or_422(parsed: Parsed) -> Parsed:
    """/tika and /meta: a document that cannot be parsed is Tika's 422."""
    if parsed.failure is not None:
        code, message = parsed.failure
        extra = {"job_id": parsed.job["id"]} if parsed.job else None
        raise ApiError(code, message, status=422, extra=extra)
    return parsed


def content_for(parsed: Parsed, metadata: dict, handler: str) -> str | None:
    """X-TIKA:content for a content handler: the text, XHTML (html and xml: Tika's
    ToXMLContentHandler writes no XML declaration either), or none for `ignore`."""
    if handler == "ignore":
        return None
    if handler == "text":
        return parsed.text
    return xhtml(parsed.text, metadata, parsed.page_ends)


def tika_object(parsed: Parsed, handler: str) -> dict:
    metadata = tika_metadata(parsed)
    return with_content(metadata, content_for(parsed, metadata, handler), handler)


# --- /tika ----------------------------------------------------------------------------
async def tika(request: web.Request) -> web.Response:
    """PUT /tika, POST /tika/form: the format the Accept header asks for."""
    kind = negotiate(request.headers.get("Accept"), TEXT_OFFERS, "text/plain")
    parsed = _parsed_or_422(await parse(request))
    if kind == "application/json":
        return _tagged(json_response(tika_object(parsed, DEFAULT_HANDLER)), parsed)
    if kind == "text/plain":
        return _tagged(_text(parsed.text), parsed)
    # text/xml is written as XML, with its declaration (Tika's transformer, method=xml).
    body = xhtml(parsed.text, tika_metadata(parsed), parsed.page_ends,
                 declaration=kind in ("text/xml", "application/xml"))
    return _tagged(web.Response(text=body, content_type=kind, charset="utf-8"), parsed)


async def tika_json(request: web.Request) -> web.Response:
    """PUT /tika/{handler}, POST /tika/form/{handler}: one JSON object (Tika 3.x)."""
    handler = _handler(request)
    parsed = _parsed_or_422(await parse(request))
    return _tagged(json_response(tika_object(parsed, handler)), parsed)


# --- /rmeta ---------------------------------------------------------------------------
async def rmeta(request: web.Request) -> web.Response:
    """PUT /rmeta[/{handler}], POST /rmeta/form[/{handler}]: a list, the container first
    (textract gives no embedded documents, so the list has one object)."""
    handler = _handler(request)
    parsed = await parse(request)
    return _tagged(json_response([tika_object(parsed, handler)]), parsed)


# --- /meta ----------------------------------------------------------------------------
async def meta(request: web.Request) -> web.Response:
    """PUT /meta, POST /meta/form: the metadata object (CSV when Accept prefers it)."""
    kind = negotiate(request.headers.get("Accept"), ("application/json", "text/csv"),
                     "application/json")
    parsed = _parsed_or_422(await parse(request))
    metadata = tika_metadata(parsed)
    if kind == "text/csv":
        return _tagged(web.Response(text=as_csv(metadata), content_type="text/csv",
                                    charset="utf-8"), parsed)
    return _tagged(json_response(metadata), parsed)


async def meta_field(request: web.Request) -> web.Response:
    """PUT /meta/{field}: one key; 400 when the document cannot be parsed (Tika's rule:
    the field may have been in what was not read), 404 when it has no such key."""
    field = request.match_info["field"]
    parsed = await parse(request)
    if parsed.failure is not None:
        raise ApiError("bad_request", f"the document cannot be parsed ({parsed.failure[0]})")
    metadata = tika_metadata(parsed)
    if field not in metadata:
        raise ApiError("not_found", f"the document has no metadata field {field!r}")
    picked = {field: metadata[field]}
    if negotiate(request.headers.get("Accept"), ("application/json", "text/csv"),
                 "application/json") == "text/csv":
        return web.Response(text=as_csv(picked), content_type="text/csv", charset="utf-8")
    return json_response(picked)


# --- /detect, /version, welcome pages -------------------------------------------------
async def detect_stream(request: web.Request) -> web.Response:
    """PUT /detect/stream: the MIME type, read as the upload path reads it; no job."""
    return _text((await parse(request, detect_only=True)).content_type)


async def version(_request: web.Request) -> web.Response:
    return _text(f"textractd {__version__} (the Apache Tika Server 3.x API)")


async def greeting(_request: web.Request) -> web.Response:
    return _text(f"This is Tika Server (textractd {__version__}, the Apache Tika Server "
                 "3.x API). Please PUT\n")


async def welcome(_request: web.Request) -> web.Response:
    rows = "".join(f"<li><code>{method} {path}</code>: {what}</li>"
                   for method, path, what in ROUTE_LIST)
    return web.Response(text=f"<!DOCTYPE html>\n<html><head><title>textractd</title></head>"
                             f"<body><h1>textractd {__version__}</h1><p>Document text "
                             "extraction speaking the Apache Tika Server 3.x API beside its "
                             f"own <code>/v1</code> API.</p><ul>{rows}</ul></body></html>",
                        content_type="text/html", charset="utf-8")


ROUTE_LIST = (
    ("PUT", "/tika", "text, XHTML or JSON, as Accept asks"),
    ("PUT", "/tika/{text,html,xml}", "JSON with the content in that form"),
    ("POST", "/tika/form[/{text,html,xml}]", "the same for a multipart upload"),
    ("PUT", "/rmeta[/{text,html,xml,ignore}]", "a JSON list of metadata objects"),
    ("POST", "/rmeta/form[/{text,html,xml,ignore}]", "the same for a multipart upload"),
    ("PUT", "/meta", "the metadata (JSON, or CSV with Accept: text/csv)"),
    ("POST", "/meta/form", "the same for a multipart upload"),
    ("PUT", "/detect/stream", "the MIME type"),
    ("GET", "/version", "the version"),
    ("POST", "/v1/extract", "textractd's own API (see its README)"),
)


# --- helpers --------------------------------------------------------------------------
def _tagged(response: web.Response, parsed: Parsed) -> web.Response:
    """The job's id in X-Job-ID (as /v1/extract): an operator can find it, and a client
    that knows textractd can read the job itself."""
    if parsed.job is not None:
        response.headers["X-Job-ID"] = parsed.job["id"]
    return response


def _text(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/plain", charset="utf-8")


def _handler(request: web.Request) -> str:
    name = request.match_info.get("handler", "").lower()
    return HANDLERS.get(name, DEFAULT_HANDLER)  # Tika: an unknown name is the default


def negotiate(accept: str | None, offers: tuple[str, ...], default: str) -> str:
    """The offer the Accept header prefers (q-values, exact before type/* before */*);
    `default` when it names none of them or is absent."""
    best, best_rank = default, (0.0, -1)
    for item in (accept or "").split(","):
        media, *params = (part.strip() for part in item.split(";"))
        media = media.lower()
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0 or "/" not in media:
            continue
        if media in offers:
            rank = (q, 2)
            candidate = media
        elif media.endswith("/*") and media != "*/*":
            candidate = next((o for o in offers if o.startswith(media[:-1])), "")
            rank = (q, 1)
        else:
            candidate, rank = default, (q, 0)
        if candidate and rank > best_rank:
            best, best_rank = candidate, rank
    return best


def tika_listeners(settings: Settings) -> list[socket.socket] | None:
    """The second listener (TIKA_PORT) as a bound socket for web.run_app, or None."""
    if settings.tika_port <= 0:
        return None
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        return [socket.create_server((settings.host, settings.tika_port), family=family)]
    except OSError as exc:  # taken, or not ours to bind: refuse to start, in one line
        log.error("api.refused", reason=f"TIKA_PORT {settings.tika_port}: {exc.strerror}")
        raise SystemExit(2) from exc


def setup_tika(app: web.Application, settings: Settings, store: AsyncJobStore,
               accept: Accept) -> None:
    """Register the Tika routes; `accept` is the api's accept-and-wait."""
    app[TIKA] = TikaContext(settings, store, accept)
    if settings.tika_anonymous == LOOPBACK:
        log.warning("tika.anonymous_access", reason="TIKA_ANONYMOUS=loopback: the Tika "
                    "routes answer requests without a key from this host; behind a proxy "
                    "on the same host that is everyone")
    router = app.router
    router.add_get("/", welcome)
    router.add_get("/version", version)
    router.add_get("/tika", greeting)
    router.add_put("/tika", tika)
    router.add_post("/tika/form", tika)
    router.add_post("/tika/form/{handler}", tika_json)
    router.add_put("/tika/{handler}", tika_json)
    router.add_put("/rmeta", rmeta)
    router.add_post("/rmeta/form", rmeta)
    router.add_post("/rmeta/form/{handler}", rmeta)
    router.add_put("/rmeta/{handler}", rmeta)
    router.add_put("/meta", meta)
    router.add_post("/meta/form", meta)
    router.add_put("/meta/{field}", meta_field)
    router.add_put("/detect/stream", detect_stream)
