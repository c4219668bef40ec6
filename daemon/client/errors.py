"""The client's exceptions: one class per family of the service's error codes.

Every code of `daemon.errors.ERROR_CODES` belongs to one family, chosen from its HTTP
status, so a program catches what it can act on (`ServiceBusy`: come back later,
`DocumentRejected`: this file will never go through) and still reads the exact `code`.
"""

from __future__ import annotations

import json

from daemon.errors import ERROR_CODES


class ClientError(Exception):
    """Root of every error the client raises; `code` is the service's error code."""

    def __init__(self, code: str, message: str, *, status: int | None = None,
                 request_id: str | None = None, retry_after: float | None = None,
                 job: dict | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.job = job  # the failed job's JSON, for JobFailed


class ConnectionFailed(ClientError):
    """Raised when the service cannot be reached (refused, reset, timed out)."""


class BadRequest(ClientError):
    """Raised when the request is malformed (400, 405): fix the call, do not retry."""


class AuthenticationFailed(ClientError):
    """Raised when the API key is missing (401) or not valid for the route (403)."""


class NotFound(ClientError):
    """Raised when no such job exists (404): it never did, or it expired."""


class JobNotFinished(ClientError):
    """Raised when a job's text is asked for before it is done (409 job_not_finished)."""


class Conflict(ClientError):
    """Raised when what the request names is in a state that forbids it (409: a dead
    letter whose job was deleted, or whose document is still quarantined)."""


class DocumentRejected(ClientError):
    """Raised when the upload itself is refused for good: too large, a type the service
    does not take, encrypted (408 too: the body came too slowly)."""


class ServiceBusy(ClientError):
    """Raised when the service refuses for now (429, 503, 507) after the retries ran out."""


class RateLimited(ServiceBusy):
    """Raised on 429: too many requests or uploads at once for this key."""


class ServerError(ClientError):
    """Raised on a 500: a bug on the service's side, logged there with the request id."""


class JobFailed(ClientError):
    """Raised when a job ended `failed`: `code` is the job's error code (corrupt_document,
    extraction_timeout, ...), `job` the job's JSON."""


# The family of each HTTP status the service answers with (daemon/errors.py).
FAMILY_BY_STATUS: dict[int, type[ClientError]] = {
    400: BadRequest, 401: AuthenticationFailed, 403: AuthenticationFailed, 404: NotFound,
    405: BadRequest, 408: DocumentRejected, 409: Conflict, 413: DocumentRejected,
    415: DocumentRejected, 422: DocumentRejected, 429: RateLimited, 500: ServerError,
    503: ServiceBusy, 507: ServiceBusy,
    200: JobFailed,  # the codes a failed job carries in its error.code
}
# 409 splits by code: not finished yet is a wait, failed is the job's verdict.
FAMILY_BY_CODE: dict[str, type[ClientError]] = {
    "job_not_finished": JobNotFinished,
    "job_failed": JobFailed,
    # 422 on upload: the bytes were recognised as encrypted before a job existed.
    "encrypted_document": DocumentRejected,
}
RETRYABLE_STATUSES = frozenset({429, 503})


def family_of(code: str, status: int | None = None) -> type[ClientError]:
    """The exception class for `code` (answered with `status` when it is known)."""
    if code in FAMILY_BY_CODE:
        return FAMILY_BY_CODE[code]
    known = ERROR_CODES.get(code)
    if known is not None:
        return FAMILY_BY_STATUS.get(known.status, ClientError)
    return FAMILY_BY_STATUS.get(status or 0, ServerError if (status or 0) >= 500 else ClientError)


def error_from_reply(status: int, body: bytes, headers: dict[str, str]) -> ClientError:
    """The exception for an error reply: the JSON `{"error": {...}}` the api sends, or a
    plain one for a reply that is not (a proxy's page)."""
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error.get("message") or "")
        request_id = error.get("request_id")
    except (ValueError, KeyError, TypeError):
        code = "internal_error" if status >= 500 else f"http_{status}"
        message, request_id = body[:200].decode("utf-8", "replace"), None
    return family_of(code, status)(code, message, status=status, request_id=request_id,
                                   retry_after=retry_after_seconds(headers))


def retry_after_seconds(headers: dict[str, str]) -> float | None:
    """Retry-After in seconds (the api sends delta-seconds), None when absent or a date."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
