"""The pool master: keeps WORKER_PROCESSES children alive, enforces deadlines, runs chores.

Run as `python -m daemon.pool` (supervisord's `workers` program). textract is imported
once here, before the fork, so each child starts warm. One tick of the loop: wait for a
child to die (or the tick to pass), reap and re-queue, kill children past their
deadline (or idle with a loop that stopped turning), respawn, run the chores when due.
Signal handlers only record the signal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import shutil
import signal
import sys
import time
from multiprocessing.connection import wait

import structlog
import textract  # noqa: F401 - imported before the fork so children start warm

from daemon.breaker import death_outcome, is_poison_death, log_breaker_move
from daemon.config import Settings
from daemon.connection import REDIS_DOWN, RedisTooOld, connect, require_redis_version
from daemon.logs import configure_logging
from daemon.pool import chores, faults
from daemon.pool.child import child_main
from daemon.pool.relay import SummaryRelay
from daemon.pool.slots import (
    EXIT_BOOT_FAILED,
    EXIT_CRASHED,
    KillReason,
    SummaryPhase,
    exit_reason,
    job_folder,
    make_slots,
)
from daemon.pool.summary import finished_event, log_summary
from daemon.pool.watchdog import loop_stall_limit
from daemon.store import (
    Delivery,
    JobStore,
    consumer_name,
    ensure_group,
    master_consumer_name,
)

log = structlog.get_logger()

TICK = 0.5
# A child that died mid-job failed that attempt with this code; the last attempt's code
# is the job's when attempts run out. A child that vanished without a cause we know of
# never finished the job: after MAX_ATTEMPTS such deliveries it is too_many_attempts.
DEATH_ERRORS = {
    "deadline": ("extraction_timeout", "the job ran past JOB_TIMEOUT and was killed"),
    "memory": ("memory_limit", "the child passed the hard memory limit and was killed"),
    "killed": ("too_many_attempts", "the child was killed (perhaps out of memory)"),
    "crashed": ("too_many_attempts", "the child crashed"),
}


class Pool:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.size = max(1, settings.worker_processes)
        self.slots = make_slots(self.size)
        self.relay = SummaryRelay(self.size)
        self.children: dict[int, multiprocessing.Process] = {}
        self.signals: list[int] = []
        self.stopping_since: float | None = None
        self.restarts: dict[str, int] = {}
        self.requeued = 0
        # Few retries for the master: a call that waits out redis-py's whole backoff would
        # stall reaping and deadlines for seconds; every tick tries again anyway.
        self.store = JobStore(connect(dataclasses.replace(settings, redis_max_retries=1)),
                              settings)
        self.chores = chores.Chores(self.store, settings, self.size)

    # --- signals: recorded here, acted on in the loop ----------------------------------
    def install_signals(self) -> None:
        # Every signal also writes a byte here, which wakes the loop's wait() at once
        # instead of at the end of the tick.
        self._wakeup_r, self._wakeup_w = os.pipe()
        for fd in (self._wakeup_r, self._wakeup_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wakeup_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, lambda signo, _frame: self.signals.append(signo))

    def spawn(self, slot_no: int) -> None:
        self.slots[slot_no].reset()
        # Block TERM/INT while forking so no child dies half set up.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            child = multiprocessing.Process(target=self._child_entry, args=(slot_no,),
                                            name=f"textractd-worker-{slot_no}", daemon=False)
            child.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.children[slot_no] = child

    def _child_entry(self, slot_no: int) -> None:
        signal.set_wakeup_fd(-1)  # the master's pipe, not ours
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        # TERM and INT stay blocked until the child has its own handlers (Child.boot): a
        # TERM sent now is then a request to drain, not a default death.
        signal.pthread_sigmask(signal.SIG_SETMASK, {signal.SIGTERM, signal.SIGINT})
        child_main(self.settings, slot_no, self.slots[slot_no], self.pid,
                   self.relay.child_end(slot_no))

    # --- the loop ----------------------------------------------------------------------
    def run(self) -> int:
        self.install_signals()
        self._prepare_redis()
        for slot_no in range(self.size):
            self.spawn(slot_no)
        log.info("pool.started", children=self.size, job_timeout=self.settings.job_timeout)
        # Once now, not a tick later: a health check right after a start finds them run.
        self.chores.run_due()
        tick_due = time.monotonic() + TICK
        while True:
            now = time.monotonic()
            ended = set(wait([*(c.sentinel for c in self.children.values()),
                              self._wakeup_r, *self.relay.waitables(now)],
                             timeout=max(0.0, min(tick_due, self.relay.resumes_at(now)) - now)))
            self.relay.forward_woken(ended)
            if self.relay.only_pipes(ended) and time.monotonic() < tick_due:
                continue  # summary lines, or the end of the relay's pause: not a tick
            tick_due = time.monotonic() + TICK
            faults.crash_if_asked("crash-master")
            with contextlib.suppress(BlockingIOError):
                os.read(self._wakeup_r, 512)
            self._handle_signals()
            code = self._reap(ended)
            if code is not None:
                return code
            if self.stopping_since is not None:
                if not self.children:
                    self._tally()
                    return 0
                self._enforce_shutdown_deadline(self.stopping_since)
                continue
            self._enforce_deadlines()
            for slot_no in range(self.size):
                if slot_no not in self.children:
                    self.spawn(slot_no)
            self.chores.run_due()

    def _prepare_redis(self) -> None:
        delay = 0.2
        while not self.signals:
            try:
                require_redis_version(self.store.client)
                ensure_group(self.store.client)
                return
            except RedisTooOld as exc:  # its commands would fail job by job: refuse to start
                log.error("pool.refused", reason=str(exc))
                sys.exit(EXIT_BOOT_FAILED)
            except REDIS_DOWN as exc:
                log.warning("redis.unavailable", error=str(exc), retry_in=delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _handle_signals(self) -> None:
        while self.signals:
            signo = self.signals.pop(0)
            if self.stopping_since is None:
                # First TERM: children finish their current job, then exit.
                self.stopping_since = time.monotonic()
                log.info("pool.stopping", signal=signal.Signals(signo).name,
                         timeout=self.settings.shutdown_timeout)
                for child in self.children.values():
                    _signal(child.pid, signal.SIGTERM)
            else:
                log.warning("pool.stop_now", signal=signal.Signals(signo).name)
                self.kill_all(KillReason.SHUTDOWN)

    def _reap(self, ended: set) -> int | None:
        for slot_no, child in list(self.children.items()):
            # A closed sentinel means the child is exiting, though waitpid may not see it
            # yet: join it now rather than take it for alive (and kill it again) next tick.
            if child.sentinel not in ended and child.is_alive():
                continue
            child.join()
            del self.children[slot_no]
            slot = self.slots[slot_no]
            reason = exit_reason(child.exitcode, slot.kill_reason)
            _killpg(child.pid)  # tools it left running die with it
            self.restarts[reason] = self.restarts.get(reason, 0) + 1
            job_id = slot.job_id.decode() if slot.busy else None
            self.relay.child_died(slot_no)  # its lines first: they say what it finished
            # what the killed job's tools wrote goes now, not at the sweep
            shutil.rmtree(job_folder(self.settings.spool_dir, slot_no), ignore_errors=True)
            log.log(30 if reason in DEATH_ERRORS else 20, "child.exited", slot=slot_no,
                    child_pid=child.pid, exitcode=child.exitcode, reason=reason, job_id=job_id)
            self.chores.count_restart(reason)
            if self._finished_unlogged(slot_no):
                self._log_summary_for(slot_no)  # finished: nothing to re-queue
            elif slot.busy:
                self._requeue(slot_no, reason)
            slot.forget()
            if reason == "boot-failed" and self.stopping_since is None:
                log.error("pool.boot_failed", slot=slot_no)
                self.kill_all(KillReason.SHUTDOWN)
                return EXIT_BOOT_FAILED
        return None

    def _finished_unlogged(self, slot_no: int) -> bool:
        """Whether the dead child's last FINISH wrote a result it did not live to log."""
        slot = self.slots[slot_no]
        unlogged = slot.unlogged()
        if unlogged is None or self.relay.forwarded(slot_no) >= slot.summary_number:
            return False  # nothing finished, or its line went out before the child died
        if slot.summary_phase == SummaryPhase.STORED:
            return True
        try:  # killed while FINISH's answer was on its way: Redis knows if it landed
            return self.store.finished_since(unlogged[0], slot.finish_sent_at,
                                             consumer_name(self.settings, slot_no))
        except REDIS_DOWN:
            return False  # the re-queue is deferred too; the job stays pending

    def _log_summary_for(self, slot_no: int) -> None:
        """The summary line of a job the dead child finished but did not live to log."""
        slot = self.slots[slot_no]
        job_id, summary = slot.unlogged()
        slot.count(summary.state)
        log_summary(finished_event(summary.state), summary, job_id=job_id, slot=slot_no,
                    logged_by="master")
        slot.clear()

    def _requeue(self, slot_no: int, reason: str) -> None:
        """Hand the dead child's job back to the queue now, not after an idle timeout."""
        slot = self.slots[slot_no]
        delivery = Delivery(slot.entry_id.decode(), slot.job_id.decode(), slot.family.decode(),
                            slot.page)
        slot.clear()
        if reason == "shutdown":
            # Left pending on purpose: the same slot's next child takes it after restart.
            self.requeued += 1
            return
        code, message = DEATH_ERRORS.get(reason, ("extractor_failed", f"child {reason}"))
        try:
            settled = self.store.retry(
                delivery, consumer=master_consumer_name(self.settings),
                error_code=code, error_message=message,
                outcome=death_outcome(reason), died=is_poison_death(reason))
        except REDIS_DOWN as exc:
            # Still pending under the slot's consumer name: its next child reads it first.
            log.warning("job.requeue_deferred", job_id=delivery.job_id, error=str(exc))
            return
        if not settled.written:
            return  # the child had finished or re-queued it itself just before it died
        self.requeued += 1
        log.warning("job.requeued", job_id=delivery.job_id, reason=reason, error_code=code,
                    **({"page": delivery.page} if delivery.page else {}))
        if settled.quarantined:
            log.warning("document.quarantined", job_id=delivery.job_id, reason=reason,
                        ttl=self.settings.quarantine_ttl)
        log_breaker_move(delivery.family, settled.breaker_from, settled.breaker_to)

    def _enforce_deadlines(self) -> None:
        now, now_mono = time.time(), time.monotonic()
        stall_limit = loop_stall_limit(self.settings)
        for slot_no, child in self.children.items():
            slot = self.slots[slot_no]
            started = slot.started_at
            if slot.kill_reason != KillReason.NONE:
                continue  # already being killed; reaped on the next tick
            if started and now - started > self.settings.job_timeout:
                slot.kill_reason = KillReason.DEADLINE
                log.warning("job.deadline", slot=slot_no, job_id=slot.job_id.decode(),
                            ran_s=round(now - started, 1), child_pid=child.pid)
                _killpg(child.pid)
            elif (stalled := slot.stalled_for(now_mono)) > stall_limit:
                # Idle, and its loop stopped turning: it takes no job and never will.
                slot.kill_reason = KillReason.WEDGED
                log.warning("child.wedged", slot=slot_no, child_pid=child.pid,
                            stalled_s=round(stalled, 1))
                _killpg(child.pid)

    def _enforce_shutdown_deadline(self, stopping_since: float) -> None:
        if time.monotonic() - stopping_since > self.settings.shutdown_timeout:
            log.warning("pool.shutdown_timeout", still_running=len(self.children))
            self.kill_all(KillReason.SHUTDOWN)

    def kill_all(self, reason: KillReason) -> None:
        """SIGKILL every child with its tools, recording why in its slot."""
        for slot_no, child in self.children.items():
            self.slots[slot_no].kill_reason = reason
            _killpg(child.pid)

    def _tally(self) -> None:
        self.relay.forward()
        slots = [self.slots[n] for n in range(self.size)]
        log.info("pool.stopped", done=sum(s.done for s in slots),
                 failed=sum(s.failed for s in slots), retried=sum(s.retried for s in slots),
                 requeued=self.requeued, restarts=self.restarts)


def _signal(pid: int | None, sig: int) -> None:
    if pid is None:  # never started: nothing to signal
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _killpg(pgid: int | None) -> None:
    if pgid is None:  # never started: nothing to kill
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main() -> None:
    configure_logging("pool")
    settings = Settings.from_env()
    multiprocessing.set_start_method("fork")
    settings.spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pool = Pool(settings)
    try:
        code = pool.run()
    except Exception:
        # One JSON line with the traceback, not a raw one on stderr, after the children's
        # summary lines. The children are killed as the master's death would kill them
        # (multiprocessing would otherwise wait for them at exit); supervisord starts
        # the pool again, and the jobs they held are pending under their slots' names for
        # the new children.
        with contextlib.suppress(Exception):
            pool.relay.forward()
        log.exception("pool.crashed")
        pool.kill_all(KillReason.SHUTDOWN)
        code = EXIT_CRASHED
    sys.exit(code)

