"""What a job gives beyond its text: its pages, the result cache's part of an upload, and
`POST /v1/detect`'s answer.

Pages are views of the one text (daemon.documents.pages): a done job stores where each
page ends, and the api cuts the text it already reads. The result cache is decided in
Redis (lua.SUBMIT): here the api only names the cache entry an upload may use.
"""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp import web

from daemon.api.middleware import ApiError
from daemon.config import DEFAULT_TENANT, Settings
from daemon.documents.formats import Format
from daemon.documents.pages import page_text, pages_json
from daemon.store import (
    CACHE_SHARED_SCOPE,
    AsyncJobStore,
    JobState,
    cache_key,
    record_page_ends,
)

HASH_IN_THREAD = 1024 * 1024  # hashlib lets go of the GIL: larger uploads hash off the loop


# --- the result cache ---------------------------------------------------------------------
def cache_wanted(request: web.Request, settings: Settings) -> bool:
    """Whether this upload may be served from the result cache (`?cache=0`: never)."""
    raw = request.query.get("cache", "1")
    if raw not in ("0", "1"):
        raise ApiError("bad_request", "cache must be 0 or 1")
    return raw == "1" and settings.result_cache_ttl > 0


async def cache_fields(record: dict, data: bytes | bytearray,
                       settings: Settings) -> dict[str, str]:
    """The record fields that tie a job to its document: `sha256` always, and the
    `cache_key` its result is filed under once done (none when the cache is off)."""
    if len(data) > HASH_IN_THREAD:
        sha256 = await asyncio.to_thread(_sha256, data)
    else:
        sha256 = _sha256(data)
    fields = {"sha256": sha256}
    if settings.result_cache_ttl > 0:
        scope = (CACHE_SHARED_SCOPE if settings.result_cache_shared
                 else record.get("tenant") or DEFAULT_TENANT)
        fields["cache_key"] = cache_key(sha256, record["ext"], record.get("method", ""), scope)
    return fields


def _sha256(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


# --- pages --------------------------------------------------------------------------------
def wants_pages(request: web.Request) -> bool:
    raw = request.query.get("pages", "0")
    if raw not in ("0", "1"):
        raise ApiError("bad_request", "pages must be 0 or 1")
    return raw == "1"


def page_number(request: web.Request) -> int | None:
    """`?page=n` of /text (1-based), None when not asked."""
    raw = request.query.get("page")
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError("bad_request", "page must be a page number from 1")
    return int(raw)


async def with_pages(store: AsyncJobStore, job_id: str, job: dict | None,
                     found: tuple[dict[str, str], str | None] | None = None) -> dict | None:
    """The job with `pages` ([{number, text}], or None for a job without pages).

    `found`: the job's record and text as the caller read them already (not read again)."""
    if job is None:
        return None
    if found is None and job["state"] == JobState.DONE:
        found = await store.read(job_id)
    if found is None or job["state"] != JobState.DONE:
        return {**job, "pages": None}
    record, text = found
    ends = record_page_ends(record)
    return {**job, "pages": pages_json(text, ends) if ends and text is not None else None}


def one_page(job_id: str, record: dict[str, str], text: str, number: int) -> str:
    """Page `number` of a done job's text, or the error that says why there is none."""
    ends = record_page_ends(record)
    if not ends:
        raise ApiError("no_pages", f"job {job_id}'s document has no pages (pages are kept "
                                   "for PDF and PPTX)", extra={"job_id": job_id})
    page = page_text(text, ends, number)
    if page is None:
        raise ApiError("page_not_found", f"job {job_id} has {len(ends)} pages",
                       extra={"job_id": job_id, "pages": len(ends)})
    return page


# --- detect -------------------------------------------------------------------------------
def detected(fmt: Format, family: str) -> dict[str, str]:
    """`POST /v1/detect`'s answer for an upload the upload path accepted as `fmt`."""
    return {"format": fmt.ext, "mime_type": fmt.mime, "family": family}
