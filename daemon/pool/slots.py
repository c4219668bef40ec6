"""What the pool master and its children share: exit codes and one record per slot.

The record lives in shared memory created before the fork, so the master can see which
job a child holds (to enforce the deadline and to re-queue the job the moment the child
dies), whether its loop still turns, and which stored job it has not yet logged, without
a round trip to Redis; and it survives the child it describes.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import multiprocessing
import os
import shutil
import signal
import time
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path

from daemon.pool.summary import JobSummary
from daemon.store import JobState

# --- named exit codes ------------------------------------------------------------------
EXIT_OK = 0
EXIT_CRASHED = 1  # an exception nobody caught, logged as child.crashed or pool.crashed
EXIT_RECYCLE_JOBS = 3  # did WORKER_MAX_JOBS jobs
EXIT_RECYCLE_MEMORY = 4  # above WORKER_MAX_MEMORY_MB after a job
EXIT_BOOT_FAILED = 5  # could not set up; respawning would loop


class KillReason(enum.IntEnum):
    """Set in the slot by whoever kills a child, so the master can tell why it died."""

    NONE = 0
    DEADLINE = 1
    MEMORY = 2
    SHUTDOWN = 3
    WEDGED = 4  # idle, and its loop stopped turning


class SummaryPhase(enum.IntEnum):
    """How far a job's finishing got: what the master may log if the child dies."""

    NONE = 0
    SENT = 1  # FINISH sent, its answer not seen: Redis knows whether it landed
    STORED = 2  # FINISH wrote the result; the summary line is still to be logged


class SlotState(ctypes.Structure):
    _fields_ = [
        ("job_id", ctypes.c_char * 40),
        ("entry_id", ctypes.c_char * 40),
        ("family", ctypes.c_char * 16),
        ("page", ctypes.c_int),  # the page of a scan's page task; 0: a whole job
        ("started_at", ctypes.c_double),  # 0 while idle
        ("kill_reason", ctypes.c_int),
        ("done", ctypes.c_long),
        ("failed", ctypes.c_long),
        ("retried", ctypes.c_long),
        ("rss_mb", ctypes.c_double),
        # time.monotonic() (one clock for every process on the host) at the child loop's
        # last turn: an idle child whose loop has not turned for long is wedged.
        ("turned_at", ctypes.c_double),
        # The summary line of the job being finished, from just before FINISH until the
        # child has logged it: if the child dies in between, the master logs it.
        ("summary_phase", ctypes.c_int),  # a SummaryPhase
        # Counts the summaries remembered in this slot, across its children: the number
        # a finished job's line carries through the relay (pool/relay.py).
        ("summary_number", ctypes.c_long),
        ("finish_sent_at", ctypes.c_double),  # time.time() just before FINISH was sent
        ("summary_job_id", ctypes.c_char * 40),
        ("summary_state", ctypes.c_char * 12),
        ("summary_format", ctypes.c_char * 16),
        ("summary_bytes", ctypes.c_long),  # -1: None
        ("summary_attempt", ctypes.c_int),
        ("summary_duration_ms", ctypes.c_double),
        ("summary_chars", ctypes.c_long),  # -1: None
        ("summary_error_code", ctypes.c_char * 40),
        ("summary_sha256", ctypes.c_char * 65),
        # Set by the watch thread when the job's folder outgrew TOOL_FILE_MAX_MB and it
        # killed the job's tools: the child then fails the job output_limit.
        ("output_exceeded", ctypes.c_int),
    ]

    def begin(self, job_id: str, entry_id: str, family: str, page: int = 0) -> None:
        self.job_id = job_id.encode()
        self.entry_id = entry_id.encode()
        self.family = family.encode()[:15]
        self.page = page
        self.output_exceeded = 0
        self.started_at = time.time()

    def clear(self) -> None:
        self.started_at = 0.0
        self.job_id = b""
        self.entry_id = b""

    def reset(self) -> None:
        """Make the slot ready for a new child."""
        self.clear()
        self.kill_reason = KillReason.NONE
        self.turned_at = 0.0
        self.forget()

    @property
    def busy(self) -> bool:
        return self.started_at > 0

    # --- the loop's pulse ---------------------------------------------------------------
    def turned(self) -> None:
        """Stamped by the child at each turn of its loop (and before it clears a job, so
        the slot never reads idle with an old stamp)."""
        self.turned_at = time.monotonic()

    def stalled_for(self, now: float) -> float:
        """Seconds an idle child's loop has not turned (0 while busy or not yet started:
        a job has its own deadline)."""
        if self.busy or not self.turned_at:
            return 0.0
        return max(0.0, now - self.turned_at)

    # --- a finished job's summary until it is logged --------------------------------------
    def remember(self, job_id: str, summary: JobSummary) -> None:
        """Called just before FINISH is sent: the summary line the job will have."""
        self.summary_phase = SummaryPhase.NONE  # while the fields change
        self.summary_number += 1
        self.summary_job_id = job_id.encode()
        self.summary_state = summary.state.encode()
        self.summary_format = (summary.format or "").encode()[:15]
        self.summary_bytes = summary.bytes if summary.bytes is not None else -1
        self.summary_attempt = summary.attempt or 0
        self.summary_duration_ms = summary.duration_ms or 0.0
        self.summary_chars = summary.chars if summary.chars is not None else -1
        self.summary_error_code = (summary.error_code or "").encode()[:39]
        self.summary_sha256 = (summary.sha256 or "").encode()[:64]
        self.finish_sent_at = time.time()
        self.summary_phase = SummaryPhase.SENT  # last: the record is whole once set

    def stored(self) -> None:
        """Called once FINISH answered that it wrote the result."""
        self.summary_phase = SummaryPhase.STORED

    def unlogged(self) -> tuple[str, JobSummary] | None:
        """(job id, summary) of a job whose FINISH was sent and whose line is not yet
        logged (`summary_phase` says whether the result is known to be stored)."""
        if self.summary_phase == SummaryPhase.NONE:
            return None
        return self.summary_job_id.decode(), JobSummary(
            state=self.summary_state.decode(), format=self.summary_format.decode() or None,
            bytes=self.summary_bytes if self.summary_bytes >= 0 else None,
            attempt=self.summary_attempt,
            duration_ms=self.summary_duration_ms or None,
            chars=self.summary_chars if self.summary_chars >= 0 else None,
            error_code=self.summary_error_code.decode() or None,
            sha256=self.summary_sha256.decode() or None)

    def count(self, state: str) -> None:
        """Count a logged job in the tally the master writes at shutdown."""
        self.done += state == JobState.DONE
        self.failed += state == JobState.FAILED

    def forget(self) -> None:
        """Called once the summary is logged (or FINISH wrote nothing)."""
        self.summary_phase = SummaryPhase.NONE


def job_folder(spool_dir: Path, slot_no: int) -> Path:
    """The folder of the slot's job: its payload, and the TMPDIR of the tools it runs.
    Emptied when the job ends, by the child, or removed by the master when it reaps a
    killed child. One per slot, kept from job to job: making and removing a folder per
    job cost a small document a tenth of a millisecond on ext4 (its journal)."""
    return spool_dir / f"slot-{slot_no}" / "job"


def empty_folder(folder: Path) -> None:
    """Remove what is in `folder` (nothing, if it is gone), keeping the folder."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder`, by the larger of size and allocated blocks (a
    delayed allocation shows in the size first); 0 once it is gone."""
    total = 0
    stack = [str(folder)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue  # removed while we looked
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    stat = entry.stat(follow_symlinks=False)
                    total += max(stat.st_size, stat.st_blocks * 512)
            except OSError:
                continue
    return total


def make_slots(count: int) -> SynchronizedArray:
    # lock=False: each field has one writer at a time (the child, or the master once the
    # child is dead), and a torn read of started_at at worst delays a deadline by a tick.
    return multiprocessing.Array(SlotState, count, lock=False)


def exit_reason(exitcode: int | None, kill_reason: int) -> str:
    """How a child ended, in the words the logs and metrics use."""
    if kill_reason == KillReason.DEADLINE:
        return "deadline"
    if kill_reason == KillReason.MEMORY:
        return "memory"
    if kill_reason == KillReason.SHUTDOWN:
        return "shutdown"
    if kill_reason == KillReason.WEDGED:
        return "wedged"
    if exitcode == EXIT_RECYCLE_JOBS:
        return "recycle-jobs"
    if exitcode == EXIT_RECYCLE_MEMORY:
        return "recycle-memory"
    if exitcode == EXIT_BOOT_FAILED:
        return "boot-failed"
    if exitcode == EXIT_OK:
        return "stopped"
    if exitcode == -signal.SIGKILL:
        return "killed"  # not by us: perhaps the kernel's OOM killer
    return "crashed"


def set_parent_death_signal(sig: int) -> None:
    """Ask the kernel to send `sig` when the parent dies (Linux prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, sig, 0, 0, 0)
