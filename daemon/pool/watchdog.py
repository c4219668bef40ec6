"""A child's watch thread: its memory (with its tools') and its heartbeat.

A thread, so both go on while textract runs in the child's main thread. The heartbeat
says more than "the process exists": it is published only while the child's loop turns
(or a job runs, which has its own deadline), so a child whose loop is wedged between
jobs drops out of the live workers at once instead of heartbeating on from this thread.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import weakref
from collections.abc import Callable

import orjson
import redis
import structlog

from daemon.config import Settings
from daemon.connection import REDIS_DOWN, connect
from daemon.pool.slots import KillReason, SlotState, folder_bytes, job_folder
from daemon.store import heartbeat_key

log = structlog.get_logger()

WATCH_EVERY = 0.25
# While a job runs, its tools can write hundreds of MB a second: the disk bound is
# JOB_DISK_MAX_MB plus what they write between two looks, so look often then (a look at
# a job's folder and the process tree costs about 0.1 ms).
BUSY_WATCH_EVERY = 0.05
HEARTBEAT_EVERY = 2.0
HEARTBEAT_TTL = int(HEARTBEAT_EVERY * 5)
# An idle loop turns about once a second (its blocking read is READ_BLOCK_MS); during a
# refused-connection outage a turn is redis-py's backoff (about 3 s) and then a sleep that
# stamps as it waits. A quiet loop past LOOP_QUIET_FLOOR is stuck, whatever its process
# still does.
LOOP_QUIET_FLOOR = 5.0
LOOP_QUIET_MAX = float(HEARTBEAT_TTL)

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
    return _tree_pages(pid) * _PAGE_SIZE / (1024 * 1024)


def _tree_pages(pid: int) -> int:
    pages = 0
    for member in [pid, *descendants(pid)]:
        try:
            # statm's second field is the resident set in pages: what psutil reports as
            # rss, without building a Process object per pid.
            with open(f"/proc/{member}/statm", "rb") as f:
                pages += int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue  # it ended while we looked
    return pages


class OwnTree:
    """tree_rss_mb of the process that made it, from two /proc files it keeps open.

    A child measures itself after every job: opening its statm and walking its task
    folder each time cost about 50 us of a 0.35 ms tiny job (mostly in the kernel); a
    pread of a file held open costs 1 us. The children of the main thread are the
    child's tools (only the main thread starts any); below them the walk is the full one.
    Make it in the process it measures: /proc/self is resolved when the file opens."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.pid = pid
        self._statm = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
        self._children = os.open(f"/proc/{pid}/task/{pid}/children", os.O_RDONLY)
        weakref.finalize(self, _close, self._statm, self._children)

    def rss_mb(self) -> float:
        pages = int(os.pread(self._statm, 256, 0).split()[1])
        for kid in os.pread(self._children, 1 << 16, 0).split():
            pages += _tree_pages(int(kid))
        return pages * _PAGE_SIZE / (1024 * 1024)


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def loop_quiet_max(settings: Settings) -> float:
    """How long an idle child's loop may go without turning before its heartbeat stops:
    well before the master kills it (`loop_stall_limit`), so the health checks see it."""
    return max(LOOP_QUIET_FLOOR, min(LOOP_QUIET_MAX, settings.job_timeout / 2))


def loop_stall_limit(settings: Settings) -> float:
    """How long an idle child's loop may go without turning before the master kills it.

    At least JOB_TIMEOUT (the bound on any one job) and one Redis call with all its
    retries (a blackholed connection), so a slow Redis is never taken for a wedge."""
    one_call = (settings.redis_max_retries + 1) * settings.redis_socket_timeout
    return max(settings.job_timeout, 2 * loop_quiet_max(settings), one_call)


class Watchdog:
    """Heartbeat every HEARTBEAT_EVERY s while the loop turns, and kill the child (with
    its tools) the moment the hard memory limit is passed during a job."""

    def __init__(self, settings: Settings, slot_no: int, consumer: str, slot: SlotState,
                 jobs_done: Callable[[], int], tree: OwnTree) -> None:
        self.settings = settings
        self.slot_no = slot_no
        self.consumer = consumer
        self.slot = slot
        self.jobs_done = jobs_done
        self.pid = tree.pid
        self.tree = tree
        self._last_beat = 0.0
        self._stalled = False

    def start(self) -> None:
        threading.Thread(target=self._run, name="watch", daemon=True).start()

    def _run(self) -> None:
        client = connect(self.settings)  # its own: redis-py clients are not shared by threads
        while True:
            time.sleep(BUSY_WATCH_EVERY if self.slot.busy else WATCH_EVERY)
            self.check(client)

    def check(self, client: redis.Redis) -> None:
        """One round: memory, then the heartbeat when due and deserved."""
        rss = self.slot.rss_mb = self.tree.rss_mb()
        hard = self.settings.worker_hard_memory_mb
        if rss > hard and self.slot.busy:
            self.slot.kill_reason = KillReason.MEMORY
            log.error("child.memory_limit", rss_mb=round(rss, 1), limit_mb=hard,
                      job_id=self.slot.job_id.decode())
            os.killpg(0, signal.SIGKILL)
        if self.slot.busy and not self.slot.output_exceeded:
            self._check_disk()
        now = time.monotonic()
        try:
            if self.loop_stalled(now):
                self._withdraw(client, now)
            elif now - self._last_beat >= HEARTBEAT_EVERY:
                self._last_beat = now
                self._beat(client)
        except REDIS_DOWN:
            pass  # no heartbeat is the right signal while Redis is down

    def _check_disk(self) -> None:
        """Bound what a job's tools write in all, as RLIMIT_FSIZE bounds each file: past
        JOB_DISK_MAX_MB, kill the tools (not the child, which then fails the job
        output_limit: a document's doing, retrying cannot help)."""
        job_id = self.slot.job_id.decode()
        used = folder_bytes(job_folder(self.settings.spool_dir, self.slot_no))
        limit = self.settings.job_disk_max_mb * 1024 * 1024
        if used <= limit:
            return
        self.slot.output_exceeded = 1
        log.error("child.output_limit", used_mb=round(used / 1048576, 1),
                  limit_mb=self.settings.job_disk_max_mb, job_id=job_id)
        for pid in descendants(self.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def loop_stalled(self, now: float) -> bool:
        return self.slot.stalled_for(now) > loop_quiet_max(self.settings)

    def _withdraw(self, client: redis.Redis, now: float) -> None:
        """The loop is stuck: remove the heartbeat now rather than let it expire, so the
        health checks count this child out at once (the master kills it at JOB_TIMEOUT)."""
        if not self._stalled:
            log.error("child.loop_stalled", stalled_s=round(self.slot.stalled_for(now), 1))
            client.delete(heartbeat_key(self.consumer))
        self._stalled = True
        self._last_beat = 0.0  # beat at once should the loop turn again

    def _beat(self, client: redis.Redis) -> None:
        self._stalled = False
        slot = self.slot
        busy = slot.busy
        beat = {"pid": self.pid, "slot": self.slot_no, "at": time.time(),
                "jobs": self.jobs_done(), "rss_mb": round(slot.rss_mb, 1), "busy": busy,
                "job_id": slot.job_id.decode() if busy else None,
                "job_started_at": slot.started_at if busy else None}
        client.set(heartbeat_key(self.consumer), orjson.dumps(beat), ex=HEARTBEAT_TTL)
