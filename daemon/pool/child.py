"""One pool child: read a job, extract it in a spool file of its own, store the result.

The child runs in its own process group so the master can kill it together with the
tools textract started (pdftotext, soffice, tesseract). It takes one job at a time:
first its own pending entries (left by its predecessor in this slot), then entries
abandoned by vanished consumers (XAUTOCLAIM), then new ones (XREADGROUP BLOCK).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import redis
import structlog

from daemon.config import Settings
from daemon.connection import REDIS_DOWN, connect
from daemon.documents import guards
from daemon.documents.extract import extract_text
from daemon.documents.formats import FORMATS
from daemon.errors import DocumentError, MachineryError, SpoolFull, TextractdError
from daemon.logs import configure_logging
from daemon.metrics import JobMetrics
from daemon.pool.slots import (
    EXIT_BOOT_FAILED,
    EXIT_OK,
    EXIT_RECYCLE_JOBS,
    EXIT_RECYCLE_MEMORY,
    KillReason,
    SlotState,
    set_parent_death_signal,
)
from daemon.store import (
    Begun,
    Delivery,
    JobStore,
    heartbeat_key,
)

log = structlog.get_logger()

READ_BLOCK_MS = 1000  # also how soon an idle child notices a drain request
HEARTBEAT_EVERY = 2.0
CLAIM_EVERY = 5.0


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def descendants(pid: int) -> list[int]:
    """The pids below `pid`, read from /proc/<pid>/task/*/children.

    psutil's children(recursive=True) reads the stat file of every process on the host
    (4 ms here, three quarters of a tiny job's CPU); walking down from the child reads a
    few small files. Plain os calls, not pathlib: this runs after every job (37 us
    against 74 us with Path.glob)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue  # it ended while we looked
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", "rb") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            found.extend(kids)
            stack.extend(kids)
    return found


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (the tools textract runs)."""
    pages = 0
    for member in [pid, *descendants(pid)]:
        try:
            # statm's second field is the resident set in pages: what psutil reports as
            # rss, without building a Process object per pid.
            with open(f"/proc/{member}/statm", "rb") as f:
                pages += int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue  # it ended while we looked
    return pages * _PAGE_SIZE / (1024 * 1024)


class Drain(BaseException):
    """Raised by the TERM handler while the child only waits for work: exit at once."""


class Child:
    def __init__(self, settings: Settings, slot_no: int, slot: SlotState,
                 master_pid: int) -> None:
        self.settings = settings
        self.slot_no = slot_no
        self.slot = slot
        self.consumer = f"{settings.consumer_prefix}-{slot_no}"
        self.spool = settings.spool_dir / f"slot-{slot_no}"
        self.limits = guards.Limits.from_settings(settings)
        self.pid = os.getpid()
        # Given by the master: os.getppid() here would already name init if the master
        # died before we got this far, and its death would go unnoticed.
        self.master_pid = master_pid
        self.draining = False
        self.jobs_done = 0
        # Jitter, so children started together are not all recycled together.
        self.max_jobs = settings.worker_max_jobs + random.randint(
            0, max(1, settings.worker_max_jobs // 10))
        self.store: JobStore | None = None
        self._last_claim = 0.0
        self._claim_cursor = "0-0"
        self.metrics = JobMetrics()
        self._waiting = False  # blocked in XREADGROUP with no job in hand
        self._rss_after_job = 0.0

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
        # A predecessor killed mid-job may have left files here: they are ours to remove.
        shutil.rmtree(self.spool, ignore_errors=True)
        self.spool.mkdir(mode=0o700)
        (self.spool / "tmp").mkdir(mode=0o700)
        # textract's tools (soffice profiles, pdftoppm pages) write under TMPDIR.
        os.environ["TMPDIR"] = tempfile.tempdir = str(self.spool / "tmp")
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        self.store = JobStore(connect(self.settings), self.settings)
        threading.Thread(target=self._watch, name="watch", daemon=True).start()

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
        while not self.draining:
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
                self.slot.clear()
                structlog.contextvars.unbind_contextvars("job_id", "request_id", "tenant")
                log.warning("redis.unavailable", error=str(exc), retry_in=backoff)
                own_pending = True
                self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
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
        taken = store.take(self.consumer)
        if taken:
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
        self._rss_after_job = self.slot.rss_mb = tree_rss_mb(self.pid)
        return self._rss_after_job

    def _heartbeat(self, client: redis.Redis) -> None:
        slot = self.slot
        busy = slot.busy
        beat = {"pid": os.getpid(), "slot": self.slot_no, "at": time.time(),
                "jobs": self.jobs_done, "rss_mb": round(slot.rss_mb, 1), "busy": busy,
                "job_id": slot.job_id.decode() if busy else None,
                "job_started_at": slot.started_at if busy else None}
        client.set(heartbeat_key(self.consumer), orjson.dumps(beat),
                   ex=int(HEARTBEAT_EVERY * 5))

    # --- one job ---------------------------------------------------------------------
    def handle(self, delivery: Delivery, begun: Begun | None = None) -> None:
        if begun is None:
            begun = self.store.begin(delivery, self.consumer)
        if begun.verdict in ("gone", "final"):
            self.store.ack(delivery)  # deleted, expired, or already has its one result
            if begun.verdict == "final":
                log.info("job.duplicate", job_id=delivery.job_id, entry=delivery.entry_id)
            return
        if begun.verdict == "wait":
            self._wait_for_breaker(delivery, begun)
            return
        if begun.verdict == "exhausted":
            self._give_up(delivery, begun)
            return
        self._run(delivery, begun)

    def _run(self, delivery: Delivery, begun: Begun) -> None:
        structlog.contextvars.bind_contextvars(job_id=delivery.job_id,
                                               request_id=begun.request_id or None,
                                               tenant=begun.tenant or None)
        if begun.breaker_transition:
            log.warning("breaker.half_open", family=delivery.family)
        self.slot.begin(delivery.job_id, delivery.entry_id, delivery.family)
        started = time.perf_counter()
        path = self.spool / f"{delivery.job_id}.{begun.ext}"
        result: dict[str, object]
        try:
            text = self._extract(path, begun)
            result = {"state": "done", "chars": len(text), "text": text}
            outcome, error = "success", None
        except (DocumentError, MachineryError) as exc:
            result = {"state": "failed", "error_code": exc.code, "error_message": str(exc)}
            error = exc
            # Only the extractor's own failures move its breaker: not the document's fault,
            # and not a full disk (retried, but it would open every family's breaker).
            outcome = ("failure" if isinstance(exc, MachineryError)
                       and not isinstance(exc, SpoolFull) else "none")
        finally:
            path.unlink(missing_ok=True)
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        result["duration_ms"] = duration_ms
        summary = {"format": begun.ext, "bytes": len(begun.payload), "attempt": begun.attempts,
                   "duration_ms": duration_ms}
        retrying = (isinstance(error, MachineryError)
                    and begun.attempts < self.settings.max_attempts)
        if retrying:
            moved = self.store.retry(delivery, consumer=self.consumer, error_code=error.code,
                                     error_message=str(error), outcome=outcome,
                                     ready_at=self._retry_at(error))
        else:
            moved = self.store.finish(delivery, result, outcome=outcome,
                                      dead=isinstance(error, MachineryError))
        # The result is out: measuring and logging no longer delay the client.
        summary["rss_mb"] = round(self._measure_rss(), 1)
        if retrying:
            self.slot.retried += 1
            log.warning("job.retry", error_code=error.code, error=str(error), **summary)
        else:
            if moved[0]:
                self.metrics.record_job(begun.ext, duration_ms / 1000, len(begun.payload),
                                        int(result.get("chars") or 0))
            self._summarise(moved[0], result, summary)
        self.slot.clear()
        log_breaker_move(delivery.family, *moved[1:])
        self.jobs_done += 1
        structlog.contextvars.unbind_contextvars("job_id", "request_id", "tenant")

    def _extract(self, path: Path, begun: Begun) -> str:
        fmt = FORMATS[begun.ext]
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(begun.payload)
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise SpoolFull(f"cannot write the spool file: {exc.strerror}") from exc
        guards.check_document(path, fmt, self.limits)
        text = extract_text(path, begun.ext, begun.method, fast_doc=self.settings.fast_doc)
        guards.check_text_size(text, self.limits)
        return text

    def _retry_at(self, error: TextractdError) -> float:
        # A full disk will not clear in milliseconds: give it a moment before the retry.
        return time.time() + 5.0 if isinstance(error, SpoolFull) else 0.0

    def _summarise(self, written: bool, result: dict, summary: dict) -> None:
        state = result["state"]
        if not written:
            log.info("job.duplicate", state=state, **summary)
            return
        self.slot.done += state == "done"
        self.slot.failed += state == "failed"
        event = "job.done" if state == "done" else "job.failed"
        log.info(event, state=state, chars=result.get("chars", 0),
                 error_code=result.get("error_code"), **summary)

    def _wait_for_breaker(self, delivery: Delivery, begun: Begun) -> None:
        age = time.time() - begun.created_at
        if age > self.settings.breaker_max_wait:
            result = {"state": "failed", "error_code": "extractor_unavailable",
                      "error_message": f"the {delivery.family} extractor stayed unavailable "
                                       f"for {int(age)} s"}
            moved = self.store.finish(delivery, result)
            self._summarise(moved[0], result, {"format": None, "bytes": 0, "attempt": 0})
            return
        # Wait in the queue, not in this child: other families keep flowing. Come back
        # when the breaker may let trials through, or when the wait bound passes.
        until = min(begun.reopen_at, begun.created_at + self.settings.breaker_max_wait + 0.1)
        self.store.retry(delivery, consumer=self.consumer, ready_at=until)
        log.info("job.deferred", job_id=delivery.job_id, family=delivery.family, until=until)

    def _give_up(self, delivery: Delivery, begun: Begun) -> None:
        code = begun.error_code or "too_many_attempts"
        message = begun.error_message
        result = {"state": "failed", "error_code": code,
                  "error_message": f"gave up after {begun.attempts} attempts"
                                   + (f"; last error: {message}" if message else "")}
        moved = self.store.finish(delivery, result, dead=True)
        self._summarise(moved[0], result, {"attempt": begun.attempts, "dead_letter": True})

    # --- memory and heartbeat: a thread, so both go on while textract runs ------------
    def _watch(self) -> None:
        """Heartbeat every HEARTBEAT_EVERY s, and kill this child (with its tools) the
        moment the hard memory limit is passed."""
        hard = self.settings.worker_hard_memory_mb
        client = connect(self.settings)  # its own: redis-py clients are not shared by threads
        last_beat = 0.0
        while True:
            time.sleep(0.25)
            rss = tree_rss_mb(self.pid)
            self.slot.rss_mb = rss
            if time.monotonic() - last_beat >= HEARTBEAT_EVERY:
                last_beat = time.monotonic()
                try:
                    self._heartbeat(client)
                except REDIS_DOWN:
                    pass  # no heartbeat is the right signal while Redis is down
            if rss > hard and self.slot.busy:
                self.slot.kill_reason = KillReason.MEMORY
                log.error("child.memory_limit", rss_mb=round(rss, 1), limit_mb=hard,
                          job_id=self.slot.job_id.decode())
                os.killpg(0, signal.SIGKILL)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.draining and time.monotonic() < deadline:
            time.sleep(min(0.1, deadline - time.monotonic()))


def log_breaker_move(family: str, before: str, after: str) -> None:
    """One warning when a script moved `family`'s breaker (its reply's from and to)."""
    if before and after and before != after:
        log.warning(f"breaker.{after}", family=family, previous=before)


def _on_parent_death(_signo: int, _frame: object) -> None:
    # The master is gone (even SIGKILLed): take our tools with us rather than orphan them.
    # Acting inside a handler is deliberate here: nothing else will run for us.
    os.killpg(0, signal.SIGKILL)


def child_main(settings: Settings, slot_no: int, slot: SlotState, master_pid: int) -> None:
    """Entry point of a forked child; its exit code tells the master why it ended."""
    child = Child(settings, slot_no, slot, master_pid)
    try:
        child.boot()
    except Exception:
        structlog.get_logger().exception("child.boot_failed")
        sys.exit(EXIT_BOOT_FAILED)
    sys.exit(child.run())
