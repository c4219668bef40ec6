"""A scanned PDF OCRed page by page across the pool, with a job's delivery guarantees.

A PDF sent with method=tesseract is OCR: seconds a page, one page after another in
textract. When it has several pages, the child that takes the job runs the guards as for
any job, then cuts it into page tasks (lua.FAN_OUT): up to OCR_PAGES_IN_FLIGHT page
entries on the stream, each finished page queueing the next (lua.FINISH_PAGE), so one big
scan never holds more than that many turns of the pool, whatever its length. A page task
is a delivery like a job's: its child may die (the master re-queues the page), its
attempts are counted (per page), it fails for the document's fault at once and for the
machinery's after MAX_ATTEMPTS, and then the job fails naming the page. The delivery that
stores the last page assembles the text from every page's output, in page order and
decoded as textract decodes the whole (pages.ocr_text), and ends the job with the one
FINISH every job has: result, counters, done message, callback, result cache.

Each page task logs one summary event (`page.done`, `page.retry`, `page.failed`,
`page.duplicate`), with the fields of a job's summary plus `page` and `pages`; the job
keeps its one summary event, logged by the delivery that ends it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import structlog

from daemon.breaker import log_breaker_move, outcome_of
from daemon.config import Settings
from daemon.documents.formats import Format
from daemon.errors import MachineryError
from daemon.pool.summary import JobSummary, log_summary
from daemon.store import Begun, Delivery, JobState

if TYPE_CHECKING:  # the child calls in here; nothing here runs before it exists
    from daemon.pool.child import Attempt, Child

log = structlog.get_logger()

OCR_METHOD = "tesseract"


def fans_out(settings: Settings, fmt: Format, method: str, pages: int | None) -> bool:
    """Whether a job is a scan to OCR page by page across the pool: a PDF sent with
    method=tesseract, of two pages or more, unless OCR_PAGES_IN_FLIGHT is 0. At 1 a scan
    gains no speed, but it holds one child per page, not for all its pages: other jobs
    queued meanwhile get their turn between two of its pages."""
    return (fmt.ext == "pdf" and method == OCR_METHOD and (pages or 0) > 1
            and settings.effective_ocr_pages_in_flight > 0)


def on_page(page: int, message: str) -> str:
    """An error message of a page task, naming its page (a whole job's: unchanged)."""
    return f"page {page}: {message}" if page else message


def fan_out(child: Child, delivery: Delivery, pages: int) -> None:
    """Queue the first page tasks of the job `delivery` began, and acknowledge its entry."""
    in_flight = child.settings.effective_ocr_pages_in_flight
    queued = child.store.fan_out(delivery, pages, in_flight)
    if queued:
        log.info("job.fanned_out", pages=pages, queued=queued, in_flight=in_flight)
    else:  # already fanned out by an earlier delivery, or re-queued meanwhile
        log.info("job.duplicate", job_id=delivery.job_id, entry=delivery.entry_id)


def settle_page(child: Child, delivery: Delivery, begun: Begun,
                attempt: Attempt) -> Begun | None:
    """Store a page task's output, re-queue it, or fail the job naming the page, as
    child.settlement rules for a job; then the page's summary line. Returns how to begin
    the job's assembly when this delivery stored the last page, else None."""
    from daemon.pool.child import Settlement, settlement

    page, error = delivery.page, attempt.error
    summary = JobSummary(
        state=JobState.PROCESSING, format=begun.ext, bytes=len(begun.payload),
        attempt=begun.attempts, duration_ms=attempt.duration_ms,
        chars=len(attempt.page_output) if attempt.page_output is not None else None,
        error_code=error.code if error is not None else None, sha256=attempt.sha256)
    where = {"page": page, "pages": begun.pages}
    if error is None:
        stored = child.store.finish_page(delivery, attempt.page_output or b"")
        event = "page.done" if stored.stored else "page.duplicate"
        log_summary(event, summary, **where, pages_done=stored.done)
        if not stored.last:
            return None
        # the job's own attempt count and begin time, for its result and summary line
        return dataclasses.replace(begun, verdict="assemble", attempts=begun.job_attempts)
    decided = settlement(error, begun.attempts, child.settings.max_attempts)
    outcome = outcome_of(error)
    if decided is Settlement.RETRY and isinstance(error, MachineryError):
        settled = child.store.retry(delivery, consumer=child.consumer, error_code=error.code,
                                    error_message=str(error), outcome=outcome,
                                    ready_at=child._retry_at(error))
        child.slot.retried += 1
        log_summary("page.retry", summary._replace(rss_mb=child._rss()), **where,
                    error=str(error))
    else:
        # The page cannot be read: neither can the scan. The job fails as a job whose
        # extraction failed so (dead-lettered when the machinery gave up).
        dead = decided is Settlement.GIVE_UP
        job_ms = (round((time.time() - begun.job_started_at) * 1000, 1)
                  if begun.job_started_at else attempt.duration_ms)
        job_summary = summary._replace(state=JobState.FAILED, attempt=begun.job_attempts,
                                       chars=None, duration_ms=job_ms)
        result: dict[str, object] = {"state": JobState.FAILED, "error_code": error.code,
                                     "error_message": on_page(page, str(error)),
                                     "duration_ms": job_ms}
        settled = child._finish(delivery, result, job_summary, outcome=outcome, dead=dead)
        if settled.written:
            child.metrics.record_job(begun.ext, job_ms / 1000, len(begun.payload), 0)
        log_summary("page.failed", summary._replace(state=JobState.FAILED), **where,
                    error=str(error))
        child._summarise(settled.written, job_summary._replace(rss_mb=child._rss()),
                        dead_letter=dead, **where)
    log_breaker_move(delivery.family, settled.breaker_from, settled.breaker_to)
    return None
