"""The exception tree and the one list of error codes clients can act on.

The tree draws the line the retry logic and the circuit breakers need: a `DocumentError`
is the document's fault (fail the job, never retry, never move a breaker); a
`MachineryError` is ours (retry the job, count against the extractor's breaker); a
`ServiceError` is the service refusing an upload for now (the client retries later, no job
is failed and no breaker moves).
"""

from __future__ import annotations

from dataclasses import dataclass


class TextractdError(Exception):
    """Root of every error textractd raises on purpose."""

    code = "internal_error"


# --- a job's document ---------------------------------------------------------------
class DocumentError(TextractdError):
    """Raised when the document itself cannot be extracted; retrying will not help."""


class UnsupportedFormat(DocumentError):
    """Raised when no extractor handles the document's type."""

    code = "unsupported_format"


class CorruptDocument(DocumentError):
    """Raised when the extractor rejects the bytes as malformed."""

    code = "corrupt_document"


class EncryptedDocument(DocumentError):
    """Raised when the document needs a password."""

    code = "encrypted_document"


class DocumentTooComplex(DocumentError):
    """Raised when a bomb guard trips: too many entries, pixels, pages or bytes."""

    code = "document_too_complex"


class OutputLimit(DocumentError):
    """Raised when a job's tools tried to write more than JOB_DISK_MAX_MB to disk."""

    code = "output_limit"


class PoisonDocument(DocumentError):
    """Raised when an upload is a quarantined document: it took its worker down on
    every attempt, so no worker is risked on it again."""

    code = "poison_document"

    def __init__(self, sha256: str) -> None:
        super().__init__("this document is quarantined: it took its worker down on every "
                         "attempt")
        self.sha256 = sha256


# --- the extraction machinery -------------------------------------------------------
class MachineryError(TextractdError):
    """Raised when the extraction machinery failed; the job is retried elsewhere."""

    code = "extractor_failed"


class ExtractorUnavailable(MachineryError):
    """Raised when an external tool is missing or its breaker is open."""

    code = "extractor_unavailable"


class SpoolFull(MachineryError):
    """Raised when the spool filesystem has no room for a payload."""

    code = "disk_full"


# --- the service, taking a new job ---------------------------------------------------
class ServiceError(TextractdError):
    """Raised when the service cannot take an upload now; the client should retry later."""

    code = "server_busy"


class QueueFull(ServiceError):
    """Raised when MAX_QUEUE_DEPTH jobs are already accepted and unfinished."""

    code = "queue_full"

    def __init__(self, depth: int) -> None:
        super().__init__(f"{depth} jobs waiting")
        self.depth = depth


class ReplicationTimeout(ServiceError):
    """Raised when REDIS_WAIT_FOR_REPLICAS replicas did not confirm a job within 1 s.

    The job is on the master and will run unless a failover loses it: the client is told
    the job id and that the stronger guarantee does not hold for it.
    """

    code = "replication_timeout"

    def __init__(self, job_id: str, acked: int, wanted: int) -> None:
        super().__init__(f"{acked} of {wanted} replicas confirmed job {job_id}")
        self.job_id = job_id


# --- an upload's callback_url ------------------------------------------------------
class CallbackRefused(TextractdError):
    """Raised when a callback_url may not be called: off, not listed, or a private address."""

    code = "callback_not_allowed"


class InvalidCallbackUrl(CallbackRefused):
    """Raised when a callback_url is not an absolute http(s) URL textractd can call."""

    code = "invalid_callback_url"


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    meaning: str
    action: str


# The one documented list (README's table is generated from the same words).
ERROR_CODES: dict[str, ErrorCode] = {
    e.code: e
    for e in (
        ErrorCode("bad_request", 400, "malformed request: missing file, bad parameter",
                  "fix the request"),
        ErrorCode("too_many_files", 400, "a batch with more than BATCH_MAX_FILES `file` "
                  "parts", "split it into several batches"),
        ErrorCode("invalid_callback_url", 400, "callback_url is not an absolute http(s) URL "
                  "of at most 2048 bytes", "fix the URL"),
        ErrorCode("callback_not_allowed", 400, "callbacks are off, or callback_url's host "
                  "or its address is not in CALLBACK_ALLOW (private, loopback and link-local "
                  "addresses only when listed)", "use an allowed receiver, or ask the "
                  "operator to list it"),
        ErrorCode("invalid_method", 400, "`method` not supported for this format",
                  "use one of the methods GET /v1/formats lists"),
        ErrorCode("unauthorized", 401, "no API key given", "send X-API-Key or Bearer"),
        ErrorCode("forbidden", 403, "the API key is not valid, or the route needs an admin key",
                  "use a current key (an ADMIN_API_KEY one for the operators' routes)"),
        ErrorCode("not_found", 404, "no such job or route (jobs expire after RESULT_TTL)",
                  "do not retry"),
        ErrorCode("method_not_allowed", 405, "the route exists, not with this HTTP method",
                  "use a method the Allow header lists"),
        ErrorCode("job_not_finished", 409, "the job has no text yet", "wait, then retry"),
        ErrorCode("not_replayable", 409, "the dead letter's job is queued again already, its "
                  "document was deleted, or it is quarantined",
                  "lift the quarantine first (its sha256 is in the error); purge the letter "
                  "if its document is gone"),
        ErrorCode("job_failed", 409, "the job failed, so it has no text",
                  "read the job's error.code"),
        ErrorCode("no_pages", 404, "/text?page=: the job's document has no pages (only PDF "
                  "and PPTX keep them)", "read the whole text"),
        ErrorCode("page_not_found", 404, "/text?page=: the document has fewer pages",
                  "ask for a page from 1 to the error's `pages`"),
        ErrorCode("request_timeout", 408, "the body did not arrive within UPLOAD_TIMEOUT, or "
                  "came slower than UPLOAD_MIN_RATE_KB",
                  "retry on a better connection"),
        ErrorCode("payload_too_large", 413, "body larger than MAX_CONTENT_LENGTH",
                  "do not retry this file"),
        ErrorCode("unsupported_media_type", 415, "content not recognised or contradicts the name",
                  "send a supported format (GET /v1/formats)"),
        ErrorCode("rate_limited", 429, "too many requests, or uploads at once, for this key",
                  "retry after Retry-After seconds"),
        ErrorCode("queue_full", 503, "MAX_QUEUE_DEPTH jobs are waiting",
                  "retry after Retry-After seconds"),
        ErrorCode("redis_unavailable", 503, "the queue store cannot be reached",
                  "retry after Retry-After seconds"),
        ErrorCode("server_busy", 503, "too many large uploads are being received",
                  "retry after Retry-After seconds"),
        ErrorCode("replication_timeout", 503,
                  "REDIS_WAIT_FOR_REPLICAS: no replica confirmed the job within 1 s; it is "
                  "queued but could be lost in a failover", "check the job id later"),
        ErrorCode("shutting_down", 503, "the api is stopping", "retry after Retry-After seconds"),
        ErrorCode("insufficient_storage", 507, "no disk space to accept the upload",
                  "retry later"),
        ErrorCode("poison_document", 422,
                  "the same bytes killed a worker (deadline, memory, signal) MAX_ATTEMPTS "
                  "times and are quarantined for QUARANTINE_TTL; a job queued before fails "
                  "with this code unrun", "do not retry; an operator can lift the quarantine"),
        ErrorCode("internal_error", 500, "a bug: reported in the logs with the request id",
                  "retry once, then report the request id"),
        # Codes a failed job carries in its `error.code` (the job request itself is 200).
        ErrorCode("unsupported_format", 200, "job: no extractor for this document",
                  "do not retry"),
        ErrorCode("corrupt_document", 200, "job: the document is malformed", "do not retry"),
        ErrorCode("encrypted_document", 200, "job: the document needs a password",
                  "send it decrypted"),
        ErrorCode("document_too_complex", 200,
                  "job: a bomb guard tripped (entries, ratio, pixels, pages, text size)",
                  "do not retry"),
        ErrorCode("output_limit", 200,
                  "job: its tools tried to write more than JOB_DISK_MAX_MB to disk",
                  "do not retry"),
        ErrorCode("extraction_timeout", 200, "job: ran past JOB_TIMEOUT on every attempt",
                  "retry later or split the document"),
        ErrorCode("memory_limit", 200, "job: passed the hard memory limit on every attempt",
                  "retry later or split the document"),
        ErrorCode("extractor_unavailable", 200,
                  "job: its extractor's breaker stayed open past BREAKER_MAX_WAIT",
                  "retry later"),
        ErrorCode("extractor_failed", 200, "job: the external tool failed on every attempt",
                  "retry later"),
        ErrorCode("too_many_attempts", 200, "job: delivered MAX_ATTEMPTS times, never finished",
                  "an operator can replay it from the dead-letter stream"),
        ErrorCode("disk_full", 200, "job: the spool filesystem was full on every attempt",
                  "retry later"),
        ErrorCode("cancelled", 200, "job: deleted before it finished", "none"),
    )
}
