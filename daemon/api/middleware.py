"""The api's middlewares: request id + one log line per request, errors as JSON, API keys.

`errors` is the one place an exception becomes an HTTP answer, so every error anywhere
has the same JSON shape: {"error": {"code", "message", "request_id"}}.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import time
import uuid

import orjson
import structlog
from aiohttp import web, web_response
from aiohttp.http import HttpVersion10

from daemon.api.keys import METRICS_HOOK, RATE_LIMITER, RETRY_AFTER
from daemon.api.tika.access import keyless_allowed
from daemon.config import DEFAULT_TENANT, AccessKey, Settings
from daemon.connection import REDIS_DOWN
from daemon.errors import ERROR_CODES, PoisonDocument, QueueFull, ReplicationTimeout
from daemon.logs import scrub_surrogates

log = structlog.get_logger()

OPEN_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/ui"})
# The console's page and assets, the API reference's: they hold no data (the page asks
# for an admin key and sends it with every call it makes).
OPEN_PREFIXES = ("/ui/",)
# The operators' routes: an admin key only (ADMIN_API_KEY).
ADMIN_PATHS = frozenset({"/metrics", "/status", "/health/detailed"})
ADMIN_PREFIXES = ("/v1/quarantine", "/v1/dead-letters", "/v1/console")  # and below


def is_admin_path(path: str) -> bool:
    return path in ADMIN_PATHS or path.startswith(ADMIN_PREFIXES)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SERVER_NAME = "textractd"
# Counted and logged for a request whose client went away before its answer (nginx's
# convention): not a 5xx, so a client that hangs up cannot raise the service's alarms.
CLIENT_CLOSED = 499


class ClientDisconnected(Exception):
    """Raised when the client closed its connection before its request was read whole."""


def hide_server_version() -> None:
    """Name the service, not its stack, in every answer's Server header.

    aiohttp sends `Python/3.11 aiohttp/3.x` by default, its own parser-error answers
    included (those never reach a middleware or a signal), so its module default is the
    one place that covers them all."""
    web_response.SERVER_SOFTWARE = SERVER_NAME


class ApiError(Exception):
    """Raised by a handler to answer with an error code from the documented list."""

    def __init__(self, code: str, message: str, *, status: int | None = None,
                 retry_after: int | None = None, extra: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status or ERROR_CODES[code].status
        self.retry_after = retry_after
        self.extra = extra or {}


def json_response(data: object, status: int = 200, headers: dict | None = None,
                  content_type: str = "application/json") -> web.Response:
    try:
        body = orjson.dumps(data)
    except TypeError:  # a lone surrogate echoed from a non-UTF-8 header: replace it
        body = scrub_surrogates(json.dumps(data, ensure_ascii=False)).encode()
    return web.Response(body=body, status=status, headers=headers, content_type=content_type)


def error_response(request: web.Request, code: str, message: str, status: int,
                   retry_after: int | None = None, extra: dict | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message,
                      "request_id": request.get("request_id"), **(extra or {})}}
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return json_response(body, status=status, headers=headers)


@web.middleware
async def request_context(request: web.Request, handler) -> web.StreamResponse:
    """Take or make the request id, bind it for every log line, log one line at the end."""
    given = request.headers.get("X-Request-ID", "")
    request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
    request["request_id"] = request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        route = request.match_info.route.resource
        request["route"] = route.canonical if route is not None else "unmatched"
        log.info("http.request", method=request.method, path=request.path,
                 route=request["route"], status=status, duration_ms=duration_ms,
                 job_id=request.get("job_id"), **request.get("accepted", {}))
        recorder = request.app.get(METRICS_HOOK)
        if recorder is not None:
            recorder(request["route"], request.method, status, duration_ms / 1000)



@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(request, exc.code, str(exc), exc.status, exc.retry_after,
                              exc.extra)
    except QueueFull as exc:
        return error_response(request, exc.code, f"the queue is full ({exc.depth} jobs)",
                              503, retry_after=request.app[RETRY_AFTER](exc.depth))
    except ReplicationTimeout as exc:
        return error_response(request, exc.code, str(exc), 503, retry_after=2,
                              extra={"job_id": exc.job_id})
    except PoisonDocument as exc:
        return error_response(request, exc.code, str(exc), ERROR_CODES[exc.code].status,
                              extra={"sha256": exc.sha256})
    except ClientDisconnected as exc:
        log.info("http.client_disconnected", error=str(exc))
        return web.Response(status=CLIENT_CLOSED)  # nobody reads it: it is for the log line
    except REDIS_DOWN as exc:
        if _client_gone(request):  # the client's socket failed, not Redis's
            log.info("http.client_disconnected", error=str(exc))
            return web.Response(status=CLIENT_CLOSED)
        log.warning("redis.unavailable", error=str(exc))
        return error_response(request, "redis_unavailable",
                              "the queue store is unreachable; retry shortly", 503,
                              retry_after=5)
    except web.HTTPNotFound:
        return error_response(request, "not_found", f"no route {request.path}", 404)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        response = error_response(request, "method_not_allowed",
                                  f"{request.method} is not allowed here; use {allowed}", 405)
        response.headers["Allow"] = allowed
        return response
    except web.HTTPException:
        raise
    except Exception:
        log.exception("http.unhandled")
        return error_response(request, "internal_error",
                              "unexpected error; it is in the logs under this request id", 500)



def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def framing(request: web.Request, handler) -> web.StreamResponse:
    """Refuse a body framing that the two ends of a connection could read differently.

    HTTP/1.0 has no chunked coding: a 1.0 request with Transfer-Encoding must be treated
    as faulty and the connection closed (RFC 9112 section 6.1), or the bytes after it
    could be run as a second request that a proxy in front never saw."""
    if request.version <= HttpVersion10 and "Transfer-Encoding" in request.headers:
        response = error_response(request, "bad_request", "Transfer-Encoding is not "
                                  "allowed in an HTTP/1.0 request", 400)
        response.force_close()
        return response
    return await handler(request)


def presented_key(request: web.Request) -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    scheme, token = scheme.lower(), token.strip()
    if scheme == "basic" and token:
        return _basic_key(token)
    return token if scheme == "bearer" and token else None


def _basic_key(token: str) -> str | None:
    """The key in HTTP Basic credentials, for clients that can only put it in the URL
    (`http://tika:KEY@host`): the password, or the user name when there is none."""
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8", "surrogateescape")
    except ValueError:  # binascii.Error is one
        return None
    user, _, password = decoded.partition(":")
    return password or user or None


def matching_key(presented: str, keys: tuple[AccessKey, ...]) -> AccessKey | None:
    # Compare against every key, without stopping early, in constant time per key.
    found = None
    given = presented.encode("utf-8", "surrogateescape")  # header bytes need not be UTF-8
    for key in keys:
        if hmac.compare_digest(given, key.secret.encode()):
            found = key
    return found


def tenant_of(request: web.Request) -> str:
    """The tenant whose key made the request (the default one when auth is off)."""
    return request.get("tenant", DEFAULT_TENANT)


def _admit(request: web.Request, key: AccessKey | None, key_id: int = -1) -> None:
    """Note who is asking, for the handlers and for every log line of the request."""
    tenant = key.tenant if key else DEFAULT_TENANT
    request["tenant"] = tenant
    # The key's place in the list, never the key: what per-key bounds count by.
    request["key_id"] = key_id
    structlog.contextvars.bind_contextvars(tenant=tenant)


def auth(settings: Settings):
    @web.middleware
    async def check_key(request: web.Request, handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            return await handler(request)
        if not settings.auth_required:
            _admit(request, None)
            return await handler(request)
        presented = presented_key(request)
        if presented is None:
            if keyless_allowed(request, settings.tika_anonymous):
                _admit(request, None)
                return await handler(request)
            raise ApiError("unauthorized", "send the API key in X-API-Key, Authorization: "
                                           "Bearer, or as the HTTP Basic password")
        key = matching_key(presented, settings.access_keys)
        if key is None:
            raise ApiError("forbidden", "the API key is not valid")
        _admit(request, key, settings.access_keys.index(key))
        if is_admin_path(request.path) and not key.admin:
            raise ApiError("forbidden", "this route needs an admin key (ADMIN_API_KEY)")
        limiter = request.app.get(RATE_LIMITER)
        if limiter is not None:
            wait = await limiter.retry_after(presented)
            if wait is not None:
                raise ApiError("rate_limited", f"more than {limiter.per_minute} requests "
                                               "a minute with this key", retry_after=wait)
        return await handler(request)

    return check_key
