"""The API's contract: an OpenAPI 3.1 document at GET /openapi.json, read by /docs.

Every route the app serves has one entry in OPERATIONS, keyed (METHOD, path) as aiohttp
spells the path; tests/test_openapi.py fails when a route and the document disagree, so a
new route is documented by adding its entry here (`op(...)` fills in the error answers).
The error codes are an enum made from daemon.errors.ERROR_CODES.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from daemon import __version__
from daemon.api.middleware import json_response
from daemon.api.ui import STATIC
from daemon.documents import formats
from daemon.errors import ERROR_CODES
from daemon.store import DEAD_LETTER_ID_RE

JSON = "application/json"
Schema = dict[str, Any]

# --- shapes ---------------------------------------------------------------------------------
NULLABLE_STR: Schema = {"type": ["string", "null"]}
NULLABLE_NUM: Schema = {"type": ["number", "null"]}
NULLABLE_INT: Schema = {"type": ["integer", "null"]}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message", "request_id"],
            "properties": {
                "code": {"$ref": "#/components/schemas/ErrorCode"},
                "message": {"type": "string"},
                "request_id": NULLABLE_STR,
                "job_id": NULLABLE_STR,
                "supported": {"type": "array", "items": {"type": "string"}},
                "job_error": {"$ref": "#/components/schemas/JobError"},
            },
            "additionalProperties": True}},
    },
    "ErrorCode": {"type": "string", "enum": sorted(ERROR_CODES),
                  "description": "What went wrong, for a program to act on (README: "
                                 "\"Error codes\")."},
    "JobError": {"type": ["object", "null"],
                 "properties": {"code": {"anyOf": [{"$ref": "#/components/schemas/ErrorCode"},
                                                   {"type": "null"}]},
                                "message": NULLABLE_STR}},
    "Job": {
        "type": "object",
        "required": ["id", "state", "attempts", "error"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "state": {"type": "string", "enum": ["queued", "processing", "done", "failed"]},
            "filename": NULLABLE_STR, "format": NULLABLE_STR, "method": NULLABLE_STR,
            "bytes": NULLABLE_INT, "attempts": {"type": "integer", "minimum": 0},
            "created_at": NULLABLE_NUM, "started_at": NULLABLE_NUM,
            "finished_at": NULLABLE_NUM, "duration_ms": NULLABLE_NUM, "chars": NULLABLE_INT,
            "request_id": NULLABLE_STR,
            "cached": {"type": "boolean", "description": "served from the result cache"},
            "error": {"$ref": "#/components/schemas/JobError"},
            "metadata": {"type": "object", "description": "the document's metadata (done)"},
            "pages": {"type": ["array", "null"], "items": {"type": "object"},
                      "description": "with ?pages=1: [{number, text}]; null: no pages"},
            "text": {"type": "string"},
        },
    },
    "DeadLetter": {
        "type": "object", "required": ["id", "job_id", "dead_at", "error", "attempts"],
        "properties": {
            "id": {"type": "string", "pattern": r"^\d+-\d+$"},
            "job_id": NULLABLE_STR, "dead_at": {"type": "number"},
            "error": {"$ref": "#/components/schemas/JobError"},
            "attempts": {"type": "integer"}, "filename": NULLABLE_STR,
            "format": NULLABLE_STR, "family": NULLABLE_STR, "tenant": NULLABLE_STR,
            "request_id": NULLABLE_STR,
            "record": {"type": "object", "description": "the job's record as Redis held it"},
            "history": {"type": "array", "items": {"type": "object"},
                        "description": "each delivery and failure of the job, oldest first"},
        },
    },
    "Batch": {
        "type": "object", "required": ["jobs", "accepted", "refused"],
        "properties": {
            "jobs": {"type": "array", "description": "in request order: a job, or a refused "
                                                     "part with its error (id null)",
                     "items": {"type": "object"}},
            "accepted": {"type": "integer"}, "refused": {"type": "integer"}},
    },
    "Upload": {"type": "object", "required": ["file"],
               "properties": {"file": {"type": "string", "minLength": 1, "contentMediaType":
                                       "application/octet-stream"}}},
}

# --- parameters -----------------------------------------------------------------------------
JOB_ID = {"name": "job_id", "in": "path", "required": True,
          "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
DEAD_ID = {"name": "dead_id", "in": "path", "required": True,
           "description": "the dead letter's id (its stream entry id)",
           "schema": {"type": "string", "pattern": DEAD_LETTER_ID_RE}}
WAIT = {"name": "wait", "in": "query", "required": False,
        "description": "seconds to wait for the job to finish (more than MAX_WAIT is "
                       "MAX_WAIT)",
        "schema": {"type": "number", "minimum": 0}}
CODE_FILTER = {"name": "code", "in": "query", "required": False,
               "schema": {"$ref": "#/components/schemas/ErrorCode"}}
CODE_REQUIRED = {"name": "code", "in": "query", "required": True,
                 "description": "the error code whose dead letters to act on; * for all",
                 "schema": {"anyOf": [{"$ref": "#/components/schemas/ErrorCode"},
                                      {"const": "*"}]}}
ZERO_ONE = {"type": "string", "enum": ["0", "1"]}
CACHE = {"name": "cache", "in": "query", "required": False,
         "description": "0: never serve this upload from the result cache",
         "schema": ZERO_ONE}
CALLBACK = {"name": "callback_url", "in": "query", "required": False,
            "description": "a URL the service POSTs the finished job to, signed "
                           "(CALLBACK_ALLOW decides which hosts; others are 400)",
            "schema": {"type": "string", "maxLength": 2048}}
UPLOAD_PARAMS = [
    WAIT, CACHE, CALLBACK,
    {"name": "filename", "in": "query", "required": False,
     "description": "the document's name when the body is raw bytes",
     "schema": {"type": "string", "maxLength": 255}},
    {"name": "extension", "in": "query", "required": False,
     "description": "the format the client says it is (checked against the bytes)",
     "schema": {"type": "string", "enum": sorted(formats.FORMATS)}},
    {"name": "method", "in": "query", "required": False,
     "description": "an extraction method the document's format offers (GET /v1/formats; "
                    "another format's method is 400 invalid_method)",
     "schema": {"type": "string", "enum": sorted(
         {m for f in formats.supported_formats() for m in f["methods"]})}},
]
UPLOAD_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": {"$ref": "#/components/schemas/Upload"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                            "minLength": 1}}}}


# --- building operations --------------------------------------------------------------------
def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def body(schema: Schema, description: str = "", media: str = JSON,
         headers: dict | None = None) -> dict:
    out: dict = {"description": description or "OK", "content": {media: {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def error(description: str) -> dict:
    return {"$ref": f"#/components/responses/{description}"}


ERROR_RESPONSES = {
    "400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound",
    "405": "MethodNotAllowed", "408": "RequestTimeout", "409": "Conflict",
    "413": "PayloadTooLarge", "415": "UnsupportedMediaType", "422": "Unprocessable",
    "429": "RateLimited", "503": "Unavailable", "507": "InsufficientStorage",
}
# What every route behind the key can answer, whatever it does.
KEYED_ERRORS = ("401", "403", "405", "429", "503")


def op(op_id: str, summary: str, responses: dict, *, errors: tuple[str, ...] = (),
       params: list | None = None, request_body: dict | None = None, tags: tuple = (),
       keyed: bool = True, admin: bool = False) -> dict:
    """One operation; `errors` are the statuses of the error answers it may give."""
    out: dict = {"operationId": op_id, "summary": summary, "tags": list(tags),
                 "responses": dict(responses)}
    for status in sorted(set(errors) | (set(KEYED_ERRORS) if keyed else {"405"})):
        out["responses"].setdefault(status, error(ERROR_RESPONSES[status]))
    if params:
        out["parameters"] = params
    if request_body:
        out["requestBody"] = request_body
    if not keyed:
        out["security"] = []
    if admin:
        out["description"] = "Needs an admin key (ADMIN_API_KEY)."
    return out


def _job_links(prefix: str) -> dict:
    job = {"job_id": "$response.body#/id"}
    return {f"{prefix}GetJob": {"operationId": "getJob", "parameters": job},
            f"{prefix}GetText": {"operationId": "getJobText", "parameters": job},
            f"{prefix}DeleteJob": {"operationId": "deleteJob", "parameters": job}}


def _dead_letter_links() -> dict:
    first = {"dead_id": "$response.body#/dead_letters/0/id"}
    return {"GetFirst": {"operationId": "getDeadLetter", "parameters": first},
            "ReplayFirst": {"operationId": "replayDeadLetter", "parameters": first},
            "DeleteFirst": {"operationId": "deleteDeadLetter", "parameters": first}}


JOB_ACCEPTED = {**body(ref("Job"), "accepted, not finished yet: poll Location"),
                "links": _job_links("")}
JOB_FINISHED = {**body(ref("Job"), "finished within `wait`"), "links": _job_links("Done")}
HTML = {"description": "an HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
ANY_OBJECT: Schema = {"type": "object"}

# --- the Tika Server 3.x dialect (daemon/api/tika) --------------------------------------------
def _text(description: str, *types: str) -> dict:
    return {"description": description,
            "content": {t: {"schema": {"type": "string"}} for t in types or ("text/plain",)}}


TIKA_TEXT_TYPES = ("text/plain", "text/html", "application/xhtml+xml", "text/xml",
                   "application/xml")
TIKA_ERRORS = ("400", "408", "413", "415", "422", "507")
TIKA_RAW = {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                            "minLength": 1}}}}
TIKA_FORM = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "properties": {"upload-file": {
        "type": "string", "contentMediaType": "application/octet-stream"}}}}}}
HANDLER = {"name": "handler", "in": "path", "required": True,
           "description": "the content handler: text, main, html, xml or ignore (any other "
                          "name is xml, as Tika takes it)",
           "schema": {"type": "string", "minLength": 1}}
TIKA_OBJECT = body({"type": "object"}, "Tika's metadata object, X-TIKA:content included")
TIKA_LIST = body({"type": "array", "items": {"type": "object"}},
                 "Tika's list of metadata objects, the container first")


def tika_op(op_id: str, summary: str, responses: dict, *, form: bool = False,
            params: list | None = None, errors: tuple[str, ...] = TIKA_ERRORS) -> dict:
    return op(op_id, summary, responses, errors=errors, params=[CACHE, *(params or [])],
              request_body=TIKA_FORM if form else TIKA_RAW, tags=("tika",))


TIKA_OPERATIONS: dict[tuple[str, str], dict] = {
    ("GET", "/"): op("tikaWelcome", "The Tika server's welcome page: the routes it serves",
                     {"200": HTML}, tags=("tika",)),
    ("GET", "/version"): op("tikaVersion", "The version, as Tika answers it",
                            {"200": _text("the version")}, tags=("tika",)),
    ("GET", "/tika"): op("tikaGreeting", "Tika's greeting", {"200": _text("a greeting")},
                         tags=("tika",)),
    ("PUT", "/tika"): tika_op(
        "tikaText", "The text (or XHTML, or JSON) as the Accept header asks",
        {"200": {"description": "the content", "content": {
            **{t: {"schema": {"type": "string"}} for t in TIKA_TEXT_TYPES},
            JSON: {"schema": {"type": "object"}}}}}),
    ("POST", "/tika/form"): tika_op(
        "tikaTextForm", "PUT /tika for a multipart upload",
        {"200": {"description": "the content", "content": {
            **{t: {"schema": {"type": "string"}} for t in TIKA_TEXT_TYPES},
            JSON: {"schema": {"type": "object"}}}}}, form=True),
    ("PUT", "/tika/{handler}"): tika_op("tikaJson", "One JSON object, the content in that "
                                        "handler's form", {"200": TIKA_OBJECT},
                                        params=[HANDLER]),
    ("POST", "/tika/form/{handler}"): tika_op("tikaJsonForm", "PUT /tika/{handler} for a "
                                              "multipart upload", {"200": TIKA_OBJECT},
                                              params=[HANDLER], form=True),
    ("PUT", "/rmeta"): tika_op("rmeta", "A list of metadata objects (an unreadable document "
                               "is one with X-TIKA:EXCEPTION)", {"200": TIKA_LIST}),
    ("PUT", "/rmeta/{handler}"): tika_op("rmetaHandler", "PUT /rmeta with that handler",
                                         {"200": TIKA_LIST}, params=[HANDLER]),
    ("POST", "/rmeta/form"): tika_op("rmetaForm", "PUT /rmeta for a multipart upload",
                                     {"200": TIKA_LIST}, form=True),
    ("POST", "/rmeta/form/{handler}"): tika_op(
        "rmetaFormHandler", "PUT /rmeta/{handler} for a multipart upload",
        {"200": TIKA_LIST}, params=[HANDLER], form=True),
    ("PUT", "/meta"): tika_op(
        "meta", "The metadata (JSON, or CSV with Accept: text/csv)",
        {"200": {"description": "the metadata", "content": {
            JSON: {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}}}}}),
    ("POST", "/meta/form"): tika_op(
        "metaForm", "PUT /meta for a multipart upload",
        {"200": {"description": "the metadata", "content": {
            JSON: {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}}}}},
        form=True),
    ("PUT", "/meta/{field}"): tika_op(
        "metaField", "One metadata field (404: the document has none)",
        {"200": {"description": "the field", "content": {
            JSON: {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}}}}},
        params=[{"name": "field", "in": "path", "required": True,
                 "schema": {"type": "string", "minLength": 1}}],
        errors=(*TIKA_ERRORS, "404")),
    ("PUT", "/detect/stream"): tika_op("detectStream", "The MIME type; nothing is queued",
                                       {"200": _text("the MIME type")}),
}

OPERATIONS: dict[tuple[str, str], dict] = {
    ("GET", "/health"): op("health", "Liveness: the process answers (no key needed)",
                           {"200": body({"type": "object", "required": ["status"],
                                         "properties": {"status": {"const": "pass"},
                                                        "version": {"type": "string"}}})},
                           keyed=False, tags=("operations",)),
    ("GET", "/health/detailed"): op(
        "healthDetailed", "Every component's check (application/health+json)",
        {"200": body(ANY_OBJECT, "pass or warn", "application/health+json"),
         "503": body(ANY_OBJECT, "a component fails", "application/health+json")},
        admin=True, tags=("operations",)),
    ("GET", "/status"): op(
        "status", "Uptime, queue, workers, breakers, jobs in the last minute",
        {"200": body(ANY_OBJECT), "503": body(ANY_OBJECT, "a component fails")},
        admin=True, tags=("operations",)),
    ("GET", "/metrics"): op(
        "metrics", "Counters and gauges: JSON, or Prometheus/OpenMetrics text",
        {"200": {"description": "the metrics", "content": {
            JSON: {"schema": ANY_OBJECT},
            "text/plain": {"schema": {"type": "string"}},
            "application/openmetrics-text": {"schema": {"type": "string"}}}}},
        params=[{"name": "format", "in": "query", "required": False,
                 "description": "prometheus, openmetrics or text for the text formats; "
                                "anything else (or none: then Accept decides) is JSON",
                 "schema": {"type": "string"}}],
        admin=True, tags=("operations",)),
    ("GET", "/v1/formats"): op(
        "listFormats", "The formats and extraction methods the service reads",
        {"200": body({"type": "object", "required": ["formats"],
                      "properties": {"formats": {"type": "array"}}})}, tags=("jobs",)),
    ("POST", "/v1/jobs"): op(
        "createJob", "Upload a document; its job (202 queued, or 200 when done within wait)",
        {"200": JOB_FINISHED, "202": JOB_ACCEPTED},
        errors=("400", "408", "413", "415", "422", "507"), params=UPLOAD_PARAMS,
        request_body=UPLOAD_BODY, tags=("jobs",)),
    ("POST", "/v1/extract"): op(
        "extract", "Upload and wait: the text (or the job JSON with Accept: "
                   "application/json); 202 + job when not finished in time",
        {"200": {"description": "the text, or the finished job", "content": {
            "text/plain": {"schema": {"type": "string"}}, JSON: {"schema": ref("Job")}}},
         "202": JOB_ACCEPTED},
        errors=("400", "408", "413", "415", "422", "507"), params=UPLOAD_PARAMS,
        request_body=UPLOAD_BODY, tags=("jobs",)),
    ("GET", "/v1/jobs/{job_id}"): op(
        "getJob", "A job: its state, and its text once done",
        {"200": body(ref("Job"))}, errors=("400", "404"), params=[JOB_ID, WAIT, {
            "name": "pages", "in": "query", "required": False, "schema": ZERO_ONE,
            "description": "1: the text page by page too (PDF and PPTX)"}],
        tags=("jobs",)),
    ("GET", "/v1/jobs/{job_id}/text"): op(
        "getJobText", "A done job's text",
        {"200": {"description": "the text",
                 "content": {"text/plain": {"schema": {"type": "string"}}}}},
        errors=("400", "404", "409"), params=[JOB_ID, {
            "name": "page", "in": "query", "required": False,
            "description": "one page's text (1 is the first)",
            "schema": {"type": "integer", "minimum": 1}}], tags=("jobs",)),
    ("DELETE", "/v1/jobs/{job_id}"): op(
        "deleteJob", "Delete a job (a running one ends cancelled)",
        {"204": {"description": "deleted"}}, errors=("404",), params=[JOB_ID],
        tags=("jobs",)),
    ("POST", "/v1/batches"): op(
        "createBatch", "Several documents (one `file` part each), one job each, stored "
                       "together; 200 once every job is final within wait, else 202",
        {"200": body(ref("Batch"), "every job final"),
         "202": body(ref("Batch"), "accepted; poll each job")},
        errors=("400", "408", "413", "415", "422", "507"), params=UPLOAD_PARAMS,
        request_body={"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"], "properties": {
                "file": {"type": "array", "minItems": 1, "items": {
                    "type": "string", "minLength": 1,
                    "contentMediaType": "application/octet-stream"}},
                "callback_url": {"type": "string"}}}}}},
        tags=("jobs",)),
    ("POST", "/v1/detect"): op(
        "detect", "What an upload is (format, MIME type, extractor family); nothing queued",
        {"200": body({"type": "object", "required": ["format", "mime_type", "family"],
                      "properties": {"format": {"type": "string"},
                                     "mime_type": {"type": "string"},
                                     "family": {"type": "string"}}})},
        errors=("400", "408", "413", "415", "422", "507"), params=UPLOAD_PARAMS,
        request_body=UPLOAD_BODY, tags=("jobs",)),
    ("GET", "/v1/quarantine"): op(
        "listQuarantine", "Documents quarantined for killing their workers, by sha256",
        {"200": body({"type": "object", "required": ["documents", "count"],
                      "properties": {"documents": {"type": "array",
                                                   "items": {"type": "object"}},
                                     "count": {"type": "integer"}}})},
        admin=True, tags=("operations",)),
    ("DELETE", "/v1/quarantine/{sha256}"): op(
        "liftQuarantine", "Lift one document's quarantine",
        {"204": {"description": "lifted"}}, errors=("400", "404"), admin=True,
        params=[{"name": "sha256", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}],
        tags=("operations",)),
    ("GET", "/v1/dead-letters"): op(
        "listDeadLetters", "Dead letters, newest first, a page at a time",
        {"200": {**body({"type": "object", "required": ["dead_letters", "next", "total"],
                         "properties": {"dead_letters": {"type": "array",
                                                         "items": ref("DeadLetter")},
                                        "next": {"type": ["string", "null"],
                                                 "description": "`before` of the next page"},
                                        "total": {"type": "integer"}}}),
                 "links": _dead_letter_links()}},
        errors=("400",), admin=True, tags=("dead letters",), params=[
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
            {"name": "before", "in": "query", "required": False,
             "schema": {"type": "string", "pattern": DEAD_LETTER_ID_RE}},
            CODE_FILTER]),
    ("GET", "/v1/dead-letters/{dead_id}"): op(
        "getDeadLetter", "A dead letter: the job's record and its attempt history",
        {"200": body(ref("DeadLetter"))}, errors=("404",), params=[DEAD_ID], admin=True,
        tags=("dead letters",)),
    ("DELETE", "/v1/dead-letters/{dead_id}"): op(
        "deleteDeadLetter", "Purge a dead letter and the document kept for its replay",
        {"204": {"description": "purged"}}, errors=("404",), params=[DEAD_ID], admin=True,
        tags=("dead letters",)),
    ("POST", "/v1/dead-letters/{dead_id}/replay"): op(
        "replayDeadLetter", "Queue the dead job again with a fresh attempt count",
        {"202": {**body({"type": "object", "required": ["id", "job_id", "state"],
                         "properties": {"id": {"type": "string"}, "job_id": {"type": "string"},
                                        "state": {"const": "queued"}}}),
                 "links": {"GetReplayedJob": {"operationId": "getJob", "parameters": {
                     "job_id": "$response.body#/job_id"}}}}},
        errors=("404", "409"), params=[DEAD_ID], admin=True, tags=("dead letters",)),
    ("POST", "/v1/dead-letters/replay"): op(
        "replayDeadLetters", "Replay every dead letter of one error code",
        {"200": body({"type": "object", "properties": {
            "code": {"type": "string"}, "replayed": {"type": "array"},
            "skipped": {"type": "array"}}})},
        errors=("400",), params=[CODE_REQUIRED], admin=True, tags=("dead letters",)),
    ("POST", "/v1/dead-letters/purge"): op(
        "purgeDeadLetters", "Purge every dead letter of one error code",
        {"200": body({"type": "object", "properties": {
            "code": {"type": "string"}, "purged": {"type": "array"}}})},
        errors=("400",), params=[CODE_REQUIRED], admin=True, tags=("dead letters",)),
    ("GET", "/v1/console"): op(
        "console", "What the console page shows: queue, rates, latency, workers, breakers",
        {"200": body({"type": "object", "required": ["at", "redis", "series", "failures"],
                      "properties": {"at": {"type": "number"}, "redis": ANY_OBJECT,
                                     "series": {"type": "array"},
                                     "failures": {"type": "array"}}})},
        admin=True, tags=("operations",)),
    **TIKA_OPERATIONS,
    ("GET", "/ui"): op("consolePage", "The operator's console (HTML; asks for an admin key)",
                       {"200": HTML}, keyed=False, tags=("pages",)),
    ("GET", "/ui/static/{name}"): op(
        "consoleAsset", "The console's and the reference's files",
        {"200": {"description": "the file", "content": {
            t: {"schema": {"type": "string"}} for t in (
                "text/html", "text/css", "text/javascript", "text/plain",
                "application/javascript", "image/svg+xml")}},
         "404": error("NotFound")},
        params=[{"name": "name", "in": "path", "required": True,
                 "schema": {"type": "string", "enum": sorted(
                     p.name for p in STATIC.iterdir() if p.is_file())}}],
        keyed=False, tags=("pages",)),
    ("GET", "/docs"): op("docsPage", "This reference, readable (Redoc)", {"200": HTML},
                         keyed=False, tags=("pages",)),
    ("GET", "/openapi.json"): op("getOpenApiDocument", "This document",
                                 {"200": body(ANY_OBJECT)}, keyed=False, tags=("pages",)),
}


def _error_responses() -> dict:
    out = {}
    for status, name in ERROR_RESPONSES.items():
        codes = sorted(c for c, e in ERROR_CODES.items() if str(e.status) == status)
        out[name] = {
            "description": f"an error ({', '.join(codes) or 'see the code'})",
            "content": {JSON: {"schema": ref("Error")}},
            "headers": {"Retry-After": {"schema": {"type": "string"},
                                        "description": "seconds to wait, when retrying "
                                                       "can help"}}}
    return out


def document() -> dict:
    paths: dict[str, dict] = {}
    for (method, path), operation in OPERATIONS.items():
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "textractd", "version": __version__,
                 "description": "Document text extraction: upload a document, get its text. "
                                "Errors are JSON {\"error\": {code, message, request_id}}."},
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}, {"bearer": []}, {"basic": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": _error_responses(),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic",
                          "description": "the key as the password (or the user name)"}},
        },
    }


DOCUMENT = web.AppKey("openapi_document", dict)


async def openapi_route(request: web.Request) -> web.Response:
    return json_response(request.app[DOCUMENT])


def setup_openapi(app: web.Application) -> None:
    app[DOCUMENT] = document()
    app.router.add_get("/openapi.json", openapi_route)
