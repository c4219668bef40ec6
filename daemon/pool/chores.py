"""The master's periodic chores: deferred jobs, stream trimming, spool sweep, housekeeping,
and keeping the callback sender process alive.

Each chore is cheap and idempotent, so a master on every host can run them; a Redis
outage only skips a round. The callbacks are sent by a process of their own
(daemon.pool.callbacks), never by the master: a receiver that hangs must not hold up a
tick.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import structlog

from daemon import metrics
from daemon.config import Settings
from daemon.connection import REDIS_DOWN
from daemon.pool.callbacks import sender_main
from daemon.store import (
    CHORES,
    GROUP,
    STREAM,
    JobStore,
)

log = structlog.get_logger()

# A consumer with nothing pending and silent this long is gone for good (an old host).
STALE_CONSUMER_MS = 24 * 3600 * 1000
# A sender that dies at once is started again at most this often, not in a hot loop.
SENDER_RESTART_EVERY = 2.0


class Chores:
    def __init__(self, store: JobStore, settings: Settings, pool_size: int) -> None:
        self.store = store
        self.settings = settings
        self.pool_size = pool_size
        self._last_run = 0.0
        self._paused_until = 0.0
        self._failures = 0
        self.sender: multiprocessing.Process | None = None
        self._sender_started = -SENDER_RESTART_EVERY

    def run_due(self) -> None:
        """Promote due deferred jobs every tick; the rest every CHORE_INTERVAL seconds."""
        if self.settings.callback_policy.enabled:
            self._keep_sender()
        sweep_due = time.monotonic() - self._last_run >= self.settings.chore_interval
        if sweep_due:
            self._last_run = time.monotonic()
            # The sweep needs no Redis: a full disk is cleaned even during an outage.
            removed, freed = sweep_spool(self.settings.spool_dir, self.pool_size,
                                         self.settings.job_timeout + 60)
            if removed:
                log.info("chores.swept", files=removed, bytes=freed)
        if time.monotonic() < self._paused_until:
            return  # Redis was down a moment ago: do not stall the master's loop on it
        try:
            self.store.promote_deferred()
            if sweep_due:
                self.store.trim_acknowledged()
                self._forget_stale_consumers()
                self.store.client.hset(CHORES, mapping={
                    "last_sweep": time.time(), "swept_files": removed, "swept_bytes": freed})
            self._failures = 0
        except REDIS_DOWN as exc:
            self._failures += 1
            pause = min(2.0 ** self._failures / 4, 5.0)
            self._paused_until = time.monotonic() + pause
            log.warning("chores.skipped", error=str(exc), retry_in=pause)

    def _keep_sender(self) -> None:
        """Start the callback sender, or start it again if it died (reaped here)."""
        if self.sender is not None:
            if self.sender.is_alive():
                return
            log.warning("callbacks.sender_exited", exitcode=self.sender.exitcode)
            self.sender = None
        if time.monotonic() - self._sender_started < SENDER_RESTART_EVERY:
            return
        self._sender_started = time.monotonic()
        # TERM blocked while forking, so the sender cannot die half set up; it unblocks
        # it once its own handler is in place. Daemonic: the master's exit stops it.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            self.sender = multiprocessing.Process(
                target=sender_main, args=(self.settings, os.getpid()),
                name="textractd-callbacks", daemon=True)
            self.sender.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def count_restart(self, reason: str) -> None:
        try:
            metrics.record_restart(self.store.client, reason)
        except REDIS_DOWN:
            pass  # a metric, not a job: losing one count during an outage is fine

    def _forget_stale_consumers(self) -> None:
        for consumer in self.store.client.xinfo_consumers(STREAM, GROUP):
            if consumer["pending"] == 0 and consumer["idle"] > STALE_CONSUMER_MS:
                self.store.client.xgroup_delconsumer(STREAM, GROUP, consumer["name"])


def sweep_spool(spool: Path, pool_size: int, max_age: float) -> tuple[int, int]:
    """Remove what killed children left: files older than any live job can be, and the
    folders of slots this pool no longer has. Returns (files removed, bytes freed)."""
    removed = freed = 0
    cutoff = time.time() - max_age
    if not spool.is_dir():
        return 0, 0
    for slot_dir in spool.iterdir():
        slot_no = slot_dir.name.removeprefix("slot-")
        stale_slot = not slot_no.isdigit() or int(slot_no) >= pool_size
        try:
            paths = sorted(slot_dir.rglob("*"), reverse=True)
        except OSError:
            # A child starting now removes and remakes its slot's folder: gone between
            # the listing and the walk is not an error (it crashed the master once).
            continue
        for path in paths:
            if path in (slot_dir / "tmp", slot_dir / "job"):
                continue  # the live child's TMPDIR and job folder (emptied, not removed)
            try:
                stat = path.lstat()
                if path.is_dir() and not path.is_symlink():
                    if stat.st_mtime < cutoff and not any(path.iterdir()):
                        path.rmdir()
                elif stale_slot or stat.st_mtime < cutoff:
                    path.unlink()
                    removed += 1
                    freed += stat.st_size
            except OSError:
                continue
        if stale_slot:
            shutil.rmtree(slot_dir, ignore_errors=True)
    return removed, freed
