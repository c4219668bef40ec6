"""One pool child: read a job, extract it in a spool file of its own, store the result.

The child runs in its own process group so the master can kill it together with the
tools textract started (pdftotext, soffice, tesseract). It takes one job at a time:
first its own pending entries (left by its predecessor in this slot), then entries
abandoned by vanished consumers (XAUTOCLAIM), then new ones (XREADGROUP BLOCK). A job's
turn is two steps: running the extraction (`_attempt`), then settling its outcome
(`_settle`: finish, retry, or give up), which writes the job's one summary line.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import structlog

from daemon.breaker import BreakerState, Outcome, log_breaker_move, outcome_of
from daemon.config import Settings
from daemon.connection import REDIS_DOWN, connect
from daemon.documents import guards
from daemon.documents.extract import PAYLOAD_EXTS, extract, ocr_page, payload_text
from daemon.documents.formats import FORMATS, Format
from daemon.documents.metadata import Container, read_metadata
from daemon.documents.pages import ocr_text, page_ends
from daemon.errors import (
    DocumentError,
    MachineryError,
    OutputLimit,
    SpoolFull,
    TextractdError,
)
from daemon.logs import configure_logging
from daemon.metrics import JobMetrics
from daemon.pool import faults, scans
from daemon.pool.environment import withhold_secrets
from daemon.pool.relay import RelaySink
from daemon.pool.slots import (
    EXIT_BOOT_FAILED,
    EXIT_CRASHED,
    EXIT_OK,
    EXIT_RECYCLE_JOBS,
    EXIT_RECYCLE_MEMORY,
    SlotState,
    empty_folder,
    job_folder,
    set_parent_death_signal,
)
from daemon.pool.summary import JobSummary, finished_event, log_summary, relay_summaries
from daemon.pool.watchdog import OwnTree, Watchdog
from daemon.store import (
    Begun,
    Delivery,
    JobState,
    JobStore,
    Settled,
    consumer_name,
)

log = structlog.get_logger()

READ_BLOCK_MS = 1000  # also how soon an idle child notices a drain request
CLAIM_EVERY = 5.0
SPOOL_FULL_PAUSE = 5.0  # a full disk will not clear in milliseconds


class Settlement(enum.Enum):
    """How a delivery whose extraction ran is settled."""

    DONE = "done"  # store the text
    FAILED = "failed"  # store the failure: the document's fault, retrying cannot help
    RETRY = "retry"  # the machinery failed: queue the job again
    GIVE_UP = "give_up"  # the machinery failed on the last attempt: fail, dead-letter


def settlement(error: BaseException | None, attempt: int, max_attempts: int) -> Settlement:
    """The rule: a document fault is final at once; a machinery fault is retried until
    MAX_ATTEMPTS deliveries, then the job fails and goes to the dead letters."""
    if error is None:
        return Settlement.DONE
    if not isinstance(error, MachineryError):
        return Settlement.FAILED
    return Settlement.RETRY if attempt < max_attempts else Settlement.GIVE_UP


class Extracted(NamedTuple):
    """A document's text with what was read beside it, inside the same job's guards."""

    text: str
    metadata: dict[str, object]  # the job's `metadata` object
    page_ends: list[int] | None  # where each page ends in `text` (pages.page_ends)


class Attempt(NamedTuple):
    """What running the extraction gave: the text, or the error it ended with."""

    text: str | None
    error: DocumentError | MachineryError | None
    duration_ms: float
    sha256: str = ""  # the document's, for the summary line
    metadata: dict[str, object] | None = None
    page_ends: list[int] | None = None
    fan_out: int = 0  # a scan to cut into this many page tasks (scans.fan_out)
    page_output: bytes | None = None  # a page task's OCR output


class FanOut(NamedTuple):
    """A scan whose pages are to be OCRed across the pool: what `_extract` gives instead
    of its text, once the guards have passed it."""

    pages: int


class Drain(BaseException):
    """Raised by the TERM handler while the child only waits for work: exit at once."""


class Child:
    def __init__(self, settings: Settings, slot_no: int, slot: SlotState,
                 master_pid: int, relay_fd: int | None = None) -> None:
        self.settings = settings
        self.slot_no = slot_no
        self.slot = slot
        self.consumer = consumer_name(settings, slot_no)
        self.spool = settings.spool_dir / f"slot-{slot_no}"
        self.limits = guards.Limits.from_settings(settings)
        self.tree = OwnTree()  # made here, in the child it measures
        self.pid = self.tree.pid
        # Given by the master: os.getppid() here would already name init if the master
        # died before we got this far, and its death would go unnoticed.
        self.master_pid = master_pid
        self.relay_fd = relay_fd  # the write end of the slot's summary pipe (pool/relay.py)
        self.draining = False
        self.jobs_done = 0
        # Jitter, so children started together are not all recycled together.
        self.max_jobs = settings.worker_max_jobs + random.randint(
            0, max(1, settings.worker_max_jobs // 10))
        self.store: JobStore  # connected in boot(), after the fork
        self._last_claim = 0.0
        self._claim_cursor = "0-0"
        self.metrics = JobMetrics()
        self._waiting = False  # blocked in XREADGROUP with no job in hand
        self._rss_after_job = 0.0
        # The next job, taken in the round trip that finished the last one: begun in
        # Redis (pending under our consumer), run before anything else, even when
        # draining.
        self._held: tuple[Delivery, Begun] | None = None
        # FINISH's TAKE just found the stream empty: the next turn waits in XREADGROUP
        # straight away rather than asking again (a round trip per job when jobs trickle).
        self._found_none = False

    # --- set-up ----------------------------------------------------------------------
    def boot(self) -> None:
        os.setpgid(0, 0)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, _on_parent_death)
        set_parent_death_signal(signal.SIGHUP)
        if os.getppid() != self.master_pid:  # the master died before prctl took effect
            _on_parent_death(signal.SIGHUP, None)
        # The master forked us with TERM blocked; our handler is in place now. The tools
        # we start inherit this mask, so it must not stay blocked.
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        configure_logging("worker")
        structlog.contextvars.bind_contextvars(slot=self.slot_no, consumer=self.consumer)
        if self.relay_fd is not None:
            relay_summaries(RelaySink(self.relay_fd))
        # A predecessor killed mid-job may have left files here: they are ours to remove.
        shutil.rmtree(self.spool, ignore_errors=True)
        self.spool.mkdir(mode=0o700)
        (self.spool / "tmp").mkdir(mode=0o700)
        # textract's tools (soffice profiles, pdftoppm pages) write under TMPDIR (a folder
        # of the job's own while one runs).
        os.environ["TMPDIR"] = tempfile.tempdir = str(self.spool / "tmp")
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        withhold_secrets(self.settings.tool_env)  # no API_KEY or Redis password for tools
        self.store = JobStore(connect(self.settings), self.settings)
        Watchdog(self.settings, self.slot_no, self.consumer, self.slot,
                 lambda: self.jobs_done, self.tree).start()

    def _on_term(self, _signo: int, _frame: object) -> None:
        self.draining = True  # the loop finishes the current job, then exits
        if self._waiting:
            # Nothing to finish: do not sit out the rest of the blocking read. An entry
            # Redis handed us at this very moment stays pending under our consumer name,
            # and this slot's next child reads it first.
            raise Drain

    # --- the loop --------------------------------------------------------------------
    def run(self) -> int:
        log.info("child.started", max_jobs=self.max_jobs)
        try:
            return self._loop()
        except Drain:
            return EXIT_OK

    def _loop(self) -> int:
        own_pending = True
        backoff = 0.1
        while not self.draining or self._held:
            self.slot.turned()  # the watchdog's and the master's proof that we turn
            faults.wedge_if_asked()
            faults.crash_if_asked()
            try:
                found = self._next(own_pending)
                if found is None:
                    own_pending = False
                    continue
                self.handle(*found)
                backoff = 0.1
            except REDIS_DOWN as exc:
                # redis-py already retried with backoff; keep waiting, do not crash into
                # supervisord's FATAL. Our own pending entries are re-read on return. The
                # slot is idle while we wait: the master must not take the wait for a hung
                # job and kill us at the deadline.
                self._end_job()
                log.warning("redis.unavailable", error=str(exc), retry_in=backoff)
                own_pending = True
                self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if self._held:
                continue  # begun in Redis already: run it before any recycling
            if self.jobs_done >= self.max_jobs:
                return EXIT_RECYCLE_JOBS
            # Measured once the job's tools were gone (the watch thread's figure may be
            # from the middle of the job, tools included).
            rss = self._rss_after_job
            if rss > self.settings.worker_max_memory_mb:
                log.info("child.recycle", reason="memory", rss_mb=round(rss, 1),
                         limit_mb=self.settings.worker_max_memory_mb)
                return EXIT_RECYCLE_MEMORY
        return EXIT_OK

    def _next(self, own_pending: bool) -> tuple[Delivery, Begun | None] | None:
        """The next delivery, and its Begun when it was taken up in the same call."""
        store = self.store
        self.metrics.flush_due(store.client)
        if self._held:
            held, self._held = self._held, None
            return held
        if own_pending:
            found = store.read(self.consumer, 0, own_pending=True)
            return (found[0], None) if found else None
        now = time.monotonic()
        if now - self._last_claim > CLAIM_EVERY:
            self._last_claim = now
            self._claim_cursor, claimed = store.autoclaim(self.consumer, self._claim_cursor)
            if claimed or self._claim_cursor != "0-0":
                # More abandoned entries may follow: scan on at the next turn, not in 5 s.
                self._last_claim = 0.0
            if claimed:
                log.info("job.reclaimed", job_id=claimed[0].job_id, entry=claimed[0].entry_id)
                return claimed[0], None
        # While work is queued, read and begin in one round trip; block only when none is.
        if self._found_none:
            self._found_none = False
        elif taken := store.take(self.consumer):
            return taken
        self._waiting = True
        try:
            if self.draining:  # TERM came just before we started to wait
                return None
            found = store.read(self.consumer, READ_BLOCK_MS)
        finally:
            self._waiting = False
        return (found[0], None) if found else None

    def _measure_rss(self) -> float:
        self._rss_after_job = self.slot.rss_mb = self.tree.rss_mb()
        return self._rss_after_job

    # --- one delivery ----------------------------------------------------------------
    def handle(self, delivery: Delivery, begun: Begun | None = None) -> None:
        if begun is None:
            begun = self.store.begin(delivery, self.consumer)
        if begun.verdict in ("gone", "final"):
            self.store.ack(delivery)  # deleted, expired, or already has its one result
            if begun.verdict == "final":
                log.info("job.duplicate", job_id=delivery.job_id, entry=delivery.entry_id,
                         **({"page": delivery.page} if delivery.page else {}))
            return
        structlog.contextvars.bind_contextvars(job_id=delivery.job_id,
                                               request_id=begun.request_id or None,
                                               tenant=begun.tenant or None)
        if delivery.page:
            structlog.contextvars.bind_contextvars(page=delivery.page)
        try:
            if begun.verdict == "wait":
                self._wait_for_breaker(delivery, begun)
            elif begun.verdict == "exhausted":
                self._give_up(delivery, begun)
            else:
                self._run(delivery, begun)
        finally:
            structlog.contextvars.unbind_contextvars("job_id", "request_id", "tenant", "page")

    def _run(self, delivery: Delivery, begun: Begun) -> None:
        if begun.breaker_transition:
            log_breaker_move(delivery.family, BreakerState.OPEN, BreakerState.HALF_OPEN)
        self.slot.begin(delivery.job_id, delivery.entry_id, delivery.family, delivery.page)
        attempt = self._attempt(delivery, begun)
        if attempt.fan_out:
            scans.fan_out(self, delivery, attempt.fan_out)
        elif delivery.page and begun.verdict == "run":
            # A page task: its output stored; the delivery that stores the last page
            # goes on to assemble the job's text and end the job.
            assemble = scans.settle_page(self, delivery, begun, attempt)
            if assemble is not None:
                self._settle(delivery, assemble, self._attempt(delivery, assemble))
        else:
            self._settle(delivery, begun, attempt)
        self._end_job()
        self.jobs_done += 1

    def _end_job(self) -> None:
        # Stamped before the slot reads idle, so the master never sees an idle slot with
        # the stamp from before the job (it would take the job's length for a wedge).
        self.slot.turned()
        self.slot.clear()
        self.slot.forget()  # a FINISH that raised: the job is re-read from Redis

    # --- step 1: run the extraction ----------------------------------------------------
    def _attempt(self, delivery: Delivery, begun: Begun) -> Attempt:
        started = time.perf_counter()
        # The api hashed these bytes at upload; a record from before it did is hashed here.
        sha256 = begun.sha256 or hashlib.sha256(begun.payload).hexdigest()
        extracted: Extracted | FanOut | bytes | None = None
        error: DocumentError | MachineryError | None = None
        try:
            if begun.ext in PAYLOAD_EXTS and not begun.method:
                # Read from the payload: no folder, no file (nothing reads such a file:
                # these formats have no guard, no metadata reader and no pages).
                text = payload_text(begun.payload, begun.ext)
                extracted = self._described(Path(f"{delivery.job_id}.{begun.ext}"),
                                            FORMATS[begun.ext], begun, text, None, sha256)
            else:
                extracted = self._in_job_folder(delivery.job_id, begun, sha256)
        except (DocumentError, MachineryError) as exc:
            error = self._output_limit(exc) or exc
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        if begun.verdict == "assemble" and begun.job_started_at:
            # a scan's result: its time is the whole job's, from its first page to its last
            duration_ms = round((time.time() - begun.job_started_at) * 1000, 1)
        if extracted is None:
            return Attempt(None, error, duration_ms, sha256)
        if isinstance(extracted, FanOut):
            return Attempt(None, None, duration_ms, sha256, fan_out=extracted.pages)
        if isinstance(extracted, bytes):
            return Attempt(None, None, duration_ms, sha256, page_output=extracted)
        return Attempt(extracted.text, None, duration_ms, sha256, extracted.metadata,
                       extracted.page_ends)

    def _in_job_folder(self, job_id: str, begun: Begun,
                       sha256: str) -> Extracted | FanOut | bytes:
        folder = job_folder(self.settings.spool_dir, self.slot_no)
        try:
            return self._extract(folder, job_id, begun, sha256)
        finally:
            # However the job ended, what its tools wrote goes with it (a killed child's
            # folder is removed by the master that reaps it).
            self._leave_job_folder()
            empty_folder(folder)

    def _extract(self, folder: Path, job_id: str, begun: Begun,
                 sha256: str) -> Extracted | FanOut | bytes:
        """The job's text (or a page task's OCR output, or the scan to fan out), its
        file spooled to `folder`."""
        fmt = FORMATS[begun.ext]
        path = self._spool(folder, job_id, begun)
        if begun.verdict == "assemble":
            outputs = self.store.page_outputs(job_id, begun.pages)
            if outputs is None:
                raise MachineryError("the scan's page texts are gone")
            return self._described(path, fmt, begun, *ocr_text(outputs), sha256)
        if begun.page:  # the job's guards passed the whole scan before it fanned out
            with file_size_limit(self.settings.job_disk_max_mb * 1024 * 1024):
                return ocr_page(path, begun.page)
        checked = guards.check_document(path, fmt, self.limits, begun.method, begun.payload)
        if scans.fans_out(self.settings, fmt, begun.method, checked.pages):
            return FanOut(checked.pages or 0)
        with file_size_limit(self.settings.job_disk_max_mb * 1024 * 1024):
            extraction = extract(path, begun.ext, begun.method,
                                 fast_doc=self.settings.fast_doc,
                                 postscript_seconds=self.settings.max_postscript_seconds,
                                 container=checked.container, data=begun.payload)
        return self._described(path, fmt, begun, extraction.text, extraction.page_ends,
                               sha256, checked, extraction.container)

    def _spool(self, folder: Path, job_id: str, begun: Begun) -> Path:
        """The payload written to the job folder, which becomes its tools' TMPDIR."""
        path = folder / f"{job_id}.{begun.ext}"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)  # emptied when the last job ended
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(begun.payload)
        except OSError as exc:
            raise SpoolFull(f"cannot write the spool file: {exc.strerror}") from exc
        # The tools' TMPDIR is the job's folder, so nothing they write outlives the job.
        os.environ["TMPDIR"] = tempfile.tempdir = str(folder)
        return path

    def _described(self, path: Path, fmt: Format, begun: Begun, text: str,
                   ends: list[int] | None, sha256: str,
                   checked: guards.Checked | None = None,
                   container: Container | None = None) -> Extracted:
        """The text within its limit, with the document's metadata and page ends."""
        guards.check_text_size(text, self.limits)
        # Read after the text, before the spool file goes: under the same deadline and
        # memory watch as the extraction. It never raises; what it left out is logged by
        # name only (the values are the document's data).
        meta = read_metadata(path, fmt, text, sha256=sha256, checked=checked,
                             slides=len(ends) if fmt.ext == "pptx" and ends else None,
                             container=container)
        if meta.dropped or meta.error:
            log.info("job.metadata_incomplete", dropped=sorted(meta.dropped),
                     error=meta.error)
        if ends is None:  # OCR gives its pages itself; every other text is cut here
            ends = page_ends(path, fmt, begun.method, text, meta.values.get("pages"))
        return Extracted(text, meta.values, ends)

    def _leave_job_folder(self) -> None:
        os.environ["TMPDIR"] = tempfile.tempdir = str(self.spool / "tmp")

    def _output_limit(self, error: TextractdError) -> OutputLimit | None:
        """The error to report when the job's tools wrote past JOB_DISK_MAX_MB: a tool
        killed by SIGXFSZ (directly, or as a shell wrapper such as ps2ascii reports it),
        a write of ours refused with EFBIG, or the watch thread finding the folder full."""
        cause = error.__cause__
        exit_code = getattr(cause, "exit_code", None)
        if (self.slot.output_exceeded
                or exit_code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ)
                or (isinstance(cause, OSError) and cause.errno == errno.EFBIG)):
            return OutputLimit(f"the document's tools tried to write more than "
                               f"{self.settings.job_disk_max_mb} MB (JOB_DISK_MAX_MB)")
        return None

    # --- step 2: settle the outcome ------------------------------------------------------
    def _settle(self, delivery: Delivery, begun: Begun, attempt: Attempt) -> None:
        """Finish, retry or give up, as `settlement` rules; then the summary line."""
        error = attempt.error
        decided = settlement(error, begun.attempts, self.settings.max_attempts)
        outcome = outcome_of(error)
        summary = JobSummary(
            state=JobState.DONE if error is None else JobState.FAILED, format=begun.ext,
            bytes=len(begun.payload), attempt=begun.attempts,
            duration_ms=attempt.duration_ms,
            chars=len(attempt.text) if attempt.text is not None else None,
            error_code=error.code if error is not None else None, sha256=attempt.sha256)
        if decided is Settlement.RETRY and isinstance(error, MachineryError):
            settled = self.store.retry(delivery, consumer=self.consumer, error_code=error.code,
                                       error_message=str(error), outcome=outcome,
                                       ready_at=self._retry_at(error))
            # The job is out of our hands: measuring and logging no longer delay it.
            summary = summary._replace(state=JobState.QUEUED, rss_mb=self._rss())
            self.slot.retried += 1
            log_summary("job.retry", summary, error=str(error))
        else:
            # Measured before FINISH (the job's tools are gone): whether this child will
            # run another job decides whether FINISH takes the next one with it.
            summary = summary._replace(rss_mb=self._rss())
            settled = self._finish(delivery, self._result(attempt), summary,
                                   outcome=outcome, dead=decided is Settlement.GIVE_UP,
                                   take_next=self._may_take_next())
            if settled.written:
                self.metrics.record_job(begun.ext, attempt.duration_ms / 1000,
                                        len(begun.payload), summary.chars or 0)
            self._summarise(settled.written, summary,
                            dead_letter=decided is Settlement.GIVE_UP)
        log_breaker_move(delivery.family, settled.breaker_from, settled.breaker_to)

    def _finish(self, delivery: Delivery, result: dict[str, object], summary: JobSummary, *,
                outcome: Outcome = Outcome.NONE, dead: bool = False,
                take_next: bool = False) -> Settled:
        """FINISH, with the job's summary in the slot from just before it is sent until it
        is logged: should this child die in between, the master logs it. With
        `take_next`, the next job is taken in the same round trip and held."""
        self.slot.remember(delivery.job_id, summary)
        if take_next and not dead:
            settled, self._held = self.store.finish_and_take(delivery, result,
                                                             self.consumer, outcome=outcome)
            self._found_none = self._held is None
        else:
            settled = self.store.finish(delivery, result, outcome=outcome, dead=dead)
        if not settled.written and self._landed_unanswered(delivery):
            settled = settled._replace(written=True)
        if settled.written:
            self.slot.stored()
            faults.die_if_asked_after_store()
        else:
            self.slot.forget()  # already final: its summary is someone else's
        return settled

    def _landed_unanswered(self, delivery: Delivery) -> bool:
        """Whether the job, found final, was finished by this very FINISH: Redis ran it,
        its answer was lost with the connection, and redis-py's retry found the job
        done. Then the line is this child's to log, as for any FINISH that wrote."""
        return self.store.finished_since(delivery.job_id, self.slot.finish_sent_at,
                                         self.consumer)

    def _may_take_next(self) -> bool:
        """Whether this child will run another job after this one: not when draining,
        nor when this job is its last (WORKER_MAX_JOBS) or its memory is past the soft
        limit now (it is recycled after this job)."""
        return (not self.draining and self.jobs_done + 1 < self.max_jobs
                and self._rss_after_job <= self.settings.worker_max_memory_mb)

    @staticmethod
    def _result(attempt: Attempt) -> dict[str, object]:
        """The fields FINISH stores (a 'text' pair goes to the text key)."""
        if attempt.error is None:
            text = attempt.text or ""
            return {"state": JobState.DONE, "chars": len(text), "text": text,
                    "duration_ms": attempt.duration_ms,
                    "metadata": orjson.dumps(attempt.metadata or {}),
                    "page_ends": orjson.dumps(attempt.page_ends)}
        return {"state": JobState.FAILED, "error_code": attempt.error.code,
                "error_message": str(attempt.error), "duration_ms": attempt.duration_ms}

    def _retry_at(self, error: TextractdError) -> float:
        return time.time() + SPOOL_FULL_PAUSE if isinstance(error, SpoolFull) else 0.0

    def _rss(self) -> float:
        return round(self._measure_rss(), 1)

    def _summarise(self, written: bool, summary: JobSummary, **extra: Any) -> None:
        """The summary line of a job this child finished (or found already finished)."""
        if not written:
            log_summary("job.duplicate", summary, **extra)
            return
        self.slot.count(summary.state)
        log_summary(finished_event(summary.state), summary,
                    number=self.slot.summary_number, **extra)
        faults.die_if_asked_after_log()
        self.slot.forget()

    # --- deliveries that do not run ------------------------------------------------------
    def _wait_for_breaker(self, delivery: Delivery, begun: Begun) -> None:
        age = time.time() - begun.created_at
        summary = JobSummary(state=JobState.QUEUED, format=None, bytes=None,
                             attempt=begun.attempts, duration_ms=None, rss_mb=self._rss())
        if age > self.settings.breaker_max_wait:
            result: dict[str, object] = {
                "state": JobState.FAILED, "error_code": "extractor_unavailable",
                "error_message": f"the {delivery.family} extractor stayed unavailable "
                                 f"for {int(age)} s"}
            summary = summary._replace(state=JobState.FAILED,
                                       error_code="extractor_unavailable")
            settled = self._finish(delivery, result, summary)
            self._summarise(settled.written, summary)
            return
        # Wait in the queue, not in this child: other families keep flowing. Come back
        # when the breaker may let trials through, or when the wait bound passes.
        until = min(begun.reopen_at, begun.created_at + self.settings.breaker_max_wait + 0.1)
        self.store.retry(delivery, consumer=self.consumer, ready_at=until)
        log_summary("job.deferred", summary, family=delivery.family, until=until)

    def _give_up(self, delivery: Delivery, begun: Begun) -> None:
        code = begun.error_code or "too_many_attempts"
        message = begun.error_message
        result: dict[str, object] = {
            "state": JobState.FAILED, "error_code": code,
            "error_message": scans.on_page(delivery.page,
                                           f"gave up after {begun.attempts} attempts"
                                           + (f"; last error: {message}" if message else ""))}
        summary = JobSummary(state=JobState.FAILED, format=None, bytes=None,
                             attempt=begun.attempts, duration_ms=None, error_code=code,
                             rss_mb=self._rss())
        settled = self._finish(delivery, result, summary, dead=True)
        self._summarise(settled.written, summary, dead_letter=True)
        if delivery.page:  # a page task's own line too, as any page task has
            log_summary("page.failed", summary, page=delivery.page, error=message)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.draining and time.monotonic() < deadline:
            self.slot.turned()  # waiting out an outage is a turn, not a wedge
            time.sleep(min(0.1, deadline - time.monotonic()))


@contextlib.contextmanager
def file_size_limit(limit: int):
    """Lower this process's RLIMIT_FSIZE soft limit to `limit` bytes while the tools run:
    textract starts them with subprocess, which offers no hook of ours, and they inherit
    the limit. Set here rather than once in boot() because the payload (up to
    MAX_CONTENT_LENGTH) is written first, and the child's own writes outside a job stay
    unlimited. A tool past it dies of SIGXFSZ; this process (Python ignores SIGXFSZ)
    gets EFBIG. The soft limit goes back up afterwards: lowering it needs no privilege,
    nor raising it again up to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    lowered = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_FSIZE, (lowered, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _on_parent_death(_signo: int, _frame: object) -> None:
    # The master is gone (even SIGKILLed): take our tools with us rather than orphan them.
    # Acting inside a handler is deliberate here: nothing else will run for us.
    os.killpg(0, signal.SIGKILL)


def child_main(settings: Settings, slot_no: int, slot: SlotState, master_pid: int,
               relay_fd: int) -> None:
    """Entry point of a forked child; its exit code tells the master why it ended."""
    child = Child(settings, slot_no, slot, master_pid, relay_fd)
    try:
        child.boot()
    except Exception:
        structlog.get_logger().exception("child.boot_failed")
        sys.exit(EXIT_BOOT_FAILED)
    try:
        code = child.run()
    except Exception:
        # One JSON line with the traceback, not a raw one on stderr; the master re-queues
        # the job it held.
        structlog.get_logger().exception("child.crashed")
        code = EXIT_CRASHED
    sys.exit(code)
