"""The pool's and the child's decisions, in-process against a throwaway redis-server.

No supervisord, no textract run: each test builds the pool's own objects (Pool, Child,
Watchdog, a shared slot), puts a job in Redis with the api's SUBMIT script, asks one
decision of them and reads what it did in Redis and in the captured log events. Each
runs in milliseconds; the whole-stack tests (test_faults, test_breaker, ...) show the
same rules with real processes.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from structlog.testing import capture_logs
from textract.exceptions import ShellError

from daemon.breaker import Outcome, death_outcome, is_poison_death, outcome_of
from daemon.config import Settings
from daemon.errors import (
    CorruptDocument,
    DocumentTooComplex,
    ExtractorUnavailable,
    MachineryError,
    OutputLimit,
    SpoolFull,
)
from daemon.pool.child import Attempt, Child, Settlement, file_size_limit, settlement
from daemon.pool.chores import sweep_spool
from daemon.pool.environment import minimal_environment
from daemon.pool.master import DEATH_ERRORS, Pool
from daemon.pool.slots import (
    EXIT_BOOT_FAILED,
    EXIT_OK,
    EXIT_RECYCLE_JOBS,
    EXIT_RECYCLE_MEMORY,
    KillReason,
    empty_folder,
    exit_reason,
    job_folder,
    make_slots,
)
from daemon.pool.summary import JobSummary
from daemon.pool.watchdog import (
    OwnTree,
    Watchdog,
    descendants,
    loop_quiet_max,
    loop_stall_limit,
    tree_rss_mb,
)
from daemon.store import (
    DEAD_LETTERS,
    DEFERRED,
    GROUP,
    QUARANTINE,
    STREAM,
    Begun,
    Delivery,
    JobStore,
    breaker_key,
    consumer_name,
    ensure_group,
    heartbeat_key,
    history_key,
    job_key,
    lift_quarantine,
    master_consumer_name,
    quarantine_entries,
    text_key,
)
from devtools.stack import wait_for
from tests.conftest import RedisServer, queue_job, throwaway_redis

MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    # One for the module: each test flushes it (the `settings` fixture), and starts none.
    with throwaway_redis("txr-decisions-") as server:
        yield server


@pytest.fixture
def settings(server: RedisServer, tmp_path: Path) -> Settings:
    client = server.client()
    client.flushall()
    ensure_group(client)
    return dataclasses.replace(Settings(), redis_url=server.url, home=tmp_path,
                               consumer_prefix="test", max_attempts=MAX_ATTEMPTS,
                               worker_processes=1, job_timeout=5.0)


@pytest.fixture
def store(settings: Settings, server: RedisServer) -> JobStore:
    return JobStore(server.client(), settings)


@pytest.fixture
def child(settings: Settings, store: JobStore) -> Child:
    child = Child(settings, 0, make_slots(1)[0], os.getpid())
    child.store = store
    return child


@pytest.fixture
def pool(settings: Settings) -> Iterator[Pool]:
    pool = Pool(settings)
    yield pool
    for process in pool.children.values():  # what a test started and did not reap
        if process.is_alive():
            process.kill()
        process.join()


def taken(store: JobStore, consumer: str, family: str = "pdf") -> tuple[Delivery, Begun]:
    """Queue a job and take it up as `consumer`, as a child's TAKE does."""
    queue_job(store, family)
    found = store.take(consumer)
    assert found is not None and found[1].verdict == "run"
    return found


def record(store: JobStore, job_id: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in store.client.hgetall(job_key(job_id)).items()}


def breaker(store: JobStore, family: str = "pdf") -> dict[str, str]:
    return {k.decode(): v.decode()
            for k, v in store.client.hgetall(breaker_key(family)).items()}


def queued_again(store: JobStore, job_id: str) -> bool:
    """The job is on the stream again, not yet delivered (as RETRY or a requeue puts it)."""
    [group] = store.client.xinfo_groups(STREAM)
    last_delivered = group["last-delivered-id"].decode()
    return any(fields[b"job"].decode() == job_id
               for _id, fields in store.client.xrange(STREAM, min=f"({last_delivered}"))


def one(events: list[dict], name: str) -> dict:
    found = [e for e in events if e["event"] == name]
    assert len(found) == 1, events
    return found[0]


# --- the breaker's outcome rule ------------------------------------------------------------
@pytest.mark.parametrize(("error", "outcome"), [
    (None, Outcome.SUCCESS),
    (MachineryError("the tool exited 1"), Outcome.FAILURE),
    (ExtractorUnavailable("pdftotext is not installed"), Outcome.FAILURE),
    (SpoolFull("no space left"), Outcome.NONE),  # the host's disk, not the extractor
    (CorruptDocument("not a PDF"), Outcome.NONE),  # the document's fault
    (DocumentTooComplex("too many pages"), Outcome.NONE),
])
def test_only_the_extractors_own_failures_count_against_its_breaker(error, outcome) -> None:
    assert outcome_of(error) is outcome


@pytest.mark.parametrize(("reason", "outcome", "poison"), [
    # What one document can cost by itself says nothing about the tool.
    ("deadline", Outcome.NONE, True), ("memory", Outcome.NONE, True),
    ("killed", Outcome.NONE, True),
    ("crashed", Outcome.FAILURE, True),  # a crash under the tool: evidence about it
    ("shutdown", Outcome.NONE, False),
])
def test_only_a_crash_mid_job_counts_against_the_breaker_and_every_death_but_a_stop_is_poison(
        reason, outcome, poison) -> None:
    assert death_outcome(reason) is outcome
    assert is_poison_death(reason) is poison


# --- per-document evidence and the poison quarantine ------------------------------------------
def queue_document(store: JobStore, payload: bytes, family: str = "pdf") -> str:
    """Queue a job whose record carries its document's sha256, as the api's does."""
    return queue_job(store, family, payload, sha256=hashlib.sha256(payload).hexdigest())


def take_job(store: JobStore, consumer: str, job_id: str) -> tuple[Delivery, Begun]:
    """Take `job_id` up; the re-queued entries of earlier jobs before it are dropped."""
    while True:
        found = store.take(consumer)
        assert found is not None
        if found[0].job_id == job_id:
            return found
        store.ack(found[0])


def test_failures_of_one_document_count_once_against_its_breaker_however_often_they_recur(
        child, store) -> None:
    hostile = b"%PDF- one document that crashes the tool"
    for _ in range(4):  # its retries and fresh uploads of the same bytes
        job_id = queue_document(store, hostile)
        for _attempt in range(MAX_ATTEMPTS - 1):
            delivery, _ = take_job(store, child.consumer, job_id)
            store.retry(delivery, consumer=child.consumer, error_code="extractor_failed",
                        outcome=Outcome.FAILURE)
    state = breaker(store)
    assert state.get("state", "closed") == "closed"
    assert (state["consecutive_failures"], state["total_failures"]) == ("1", "1")
    assert int(state["repeat_failures"]) == 4 * (MAX_ATTEMPTS - 1) - 1


def test_failures_of_distinct_documents_in_a_row_open_the_breaker_and_a_success_resets_them(
        child, store, settings) -> None:
    def fail(payload: bytes) -> tuple[str, str]:
        job_id = queue_document(store, payload)
        delivery, _ = take_job(store, child.consumer, job_id)
        return store.retry(delivery, consumer=child.consumer, error_code="extractor_failed",
                           outcome=Outcome.FAILURE)[1:3]

    assert fail(b"%PDF- a") == ("closed", "closed")
    assert fail(b"%PDF- b") == ("closed", "closed")
    job_id = queue_document(store, b"%PDF- fine")
    delivery, _ = take_job(store, child.consumer, job_id)
    store.finish(delivery, {"state": "done", "text": "x"}, outcome=Outcome.SUCCESS)
    assert "failing_docs" not in breaker(store)
    assert fail(b"%PDF- a") == ("closed", "closed")  # counted again: the slate is clean
    assert fail(b"%PDF- b") == ("closed", "closed")
    assert fail(b"%PDF- c") == ("closed", "open")
    assert breaker(store)["state"] == "open"
    assert settings.circuit_breaker_failure_threshold == 3


@pytest.mark.parametrize("reason", ["deadline", "memory", "killed", "crashed"])
def test_a_document_that_killed_its_worker_on_every_attempt_fails_and_is_quarantined(
        pool, child, store, settings, reason) -> None:
    payload = b"%PDF- takes its worker down"
    sha = hashlib.sha256(payload).hexdigest()
    job_id = queue_document(store, payload)
    copy_id = queue_document(store, payload)  # queued before the quarantine
    consumer = consumer_name(settings, 0)
    copy_delivery = None
    with capture_logs() as events:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            while True:  # the copy's first delivery comes between the job's attempts
                delivery, begun = store.take(consumer)
                if delivery.job_id == job_id:
                    break
                copy_delivery = delivery
                store.retry(delivery, consumer=consumer, ready_at=time.time() + 60)
            assert begun.attempts == attempt
            pool.slots[0].begin(delivery.job_id, delivery.entry_id, delivery.family)
            pool._requeue(0, reason)
    assert copy_delivery is not None

    assert one(events, "document.quarantined")["job_id"] == job_id
    assert store.client.zscore(QUARANTINE, sha) > time.time() + settings.quarantine_ttl - 60
    [entry] = quarantine_entries(store.client)
    assert (entry["sha256"], entry["job_id"], entry["deaths"]) == (sha, job_id, MAX_ATTEMPTS)
    # the job itself fails with its own death's code on its next delivery
    delivery, begun = store.take(consumer)
    assert (delivery.job_id, begun.verdict) == (job_id, "exhausted")
    assert begun.error_code == DEATH_ERRORS[reason][0]
    # the copy queued before is failed poison_document without being run
    store.promote_deferred()
    store.client.zadd(DEFERRED, {f"pdf|{copy_id}": 0})
    store.promote_deferred()
    delivery, begun = store.take(consumer)
    assert (delivery.job_id, begun.verdict, begun.error_code) == (
        copy_id, "exhausted", "poison_document")
    assert record(store, copy_id)["attempts"] == "1"  # no new attempt: no worker risked
    child.handle(delivery, begun)
    failed = record(store, copy_id)
    assert (failed["state"], failed["error_code"]) == ("failed", "poison_document")
    if reason != "crashed":
        assert "consecutive_failures" not in breaker(store)
    # an operator lifts it: the next copy runs again
    assert lift_quarantine(store.client, sha)
    assert quarantine_entries(store.client) == [] and not lift_quarantine(store.client, sha)
    again = queue_document(store, payload)
    assert take_job(store, consumer, again)[1].verdict == "run"


def test_a_document_that_merely_fails_or_a_tool_that_fails_is_never_quarantined(
        child, store) -> None:
    payload = b"%PDF- corrupt"
    for _ in range(MAX_ATTEMPTS + 1):
        job_id = queue_document(store, payload)
        child._settle(*take_job(store, child.consumer, job_id),
                      Attempt(None, CorruptDocument("not a PDF"), 1.0))
    job_id = queue_document(store, payload)
    for _ in range(MAX_ATTEMPTS):  # the tool fails, the child lives: retried, not poison
        child._settle(*take_job(store, child.consumer, job_id),
                      Attempt(None, MachineryError("exit 1"), 1.0))
    assert store.client.zcard(QUARANTINE) == 0
    assert take_job(store, child.consumer, queue_document(store, payload))[1].verdict == "run"


# --- how a child's exit is read ------------------------------------------------------------
@pytest.mark.parametrize(("exitcode", "kill_reason", "reason"), [
    (-signal.SIGKILL, KillReason.DEADLINE, "deadline"),
    (-signal.SIGKILL, KillReason.MEMORY, "memory"),
    (-signal.SIGKILL, KillReason.SHUTDOWN, "shutdown"),
    (-signal.SIGKILL, KillReason.WEDGED, "wedged"),
    (EXIT_OK, KillReason.SHUTDOWN, "shutdown"),  # our reason wins over how it ended
    (EXIT_RECYCLE_JOBS, KillReason.NONE, "recycle-jobs"),
    (EXIT_RECYCLE_MEMORY, KillReason.NONE, "recycle-memory"),
    (EXIT_BOOT_FAILED, KillReason.NONE, "boot-failed"),
    (EXIT_OK, KillReason.NONE, "stopped"),
    (-signal.SIGKILL, KillReason.NONE, "killed"),  # not by us: perhaps the OOM killer
    (-signal.SIGSEGV, KillReason.NONE, "crashed"),
    (1, KillReason.NONE, "crashed"),  # an exception out of the child's loop
])
def test_a_childs_exit_is_named_by_our_kill_reason_first_then_its_exit_code(
        exitcode, kill_reason, reason) -> None:
    assert exit_reason(exitcode, kill_reason) == reason


def _die_by_sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _exit_to_recycle() -> None:
    os._exit(EXIT_RECYCLE_JOBS)


@pytest.mark.parametrize(("target", "reason"), [
    (_die_by_sigkill, "killed"), (_exit_to_recycle, "recycle-jobs")])
def test_a_real_forked_childs_exit_code_reads_as_its_reason(target, reason) -> None:
    process = multiprocessing.get_context("fork").Process(target=target)
    process.start()
    process.join(5)
    assert exit_reason(process.exitcode, KillReason.NONE) == reason


# --- settling an attempt: finish, retry or give up -----------------------------------------
@pytest.mark.parametrize(("error", "attempt", "decided"), [
    (None, 1, Settlement.DONE),
    (None, MAX_ATTEMPTS, Settlement.DONE),
    (CorruptDocument("x"), 1, Settlement.FAILED),  # retrying a bad document cannot help
    (MachineryError("x"), 1, Settlement.RETRY),
    (MachineryError("x"), MAX_ATTEMPTS - 1, Settlement.RETRY),
    (MachineryError("x"), MAX_ATTEMPTS, Settlement.GIVE_UP),
    (SpoolFull("x"), 1, Settlement.RETRY),
])
def test_a_machinery_fault_is_retried_until_the_last_attempt_a_document_fault_never(
        error, attempt, decided) -> None:
    assert settlement(error, attempt, MAX_ATTEMPTS) is decided


def test_a_successful_attempt_stores_the_text_and_logs_job_done(child, store) -> None:
    delivery, begun = taken(store, child.consumer)
    with capture_logs() as events:
        child._settle(delivery, begun, Attempt("the text", None, 12.5))

    job = record(store, delivery.job_id)
    assert job["state"] == "done" and job["chars"] == "8"
    assert store.client.get(text_key(delivery.job_id)) == b"the text"
    assert store.client.xpending(STREAM, GROUP)["pending"] == 0
    done = one(events, "job.done")
    assert (done["state"], done["chars"], done["attempt"], done["duration_ms"]) == (
        "done", 8, 1, 12.5)
    assert child.slot.done == 1 and child.slot.unlogged() is None


@pytest.mark.parametrize("recorded", [True, False], ids=["hashed at upload", "not hashed"])
def test_an_attempt_takes_the_documents_hash_from_its_record_and_hashes_only_without_one(
        child, store, recorded) -> None:
    payload = b"plain words"
    # A stand-in the payload cannot hash to: seeing it back shows the record was used.
    stand_in = "5" * 64
    job_id = queue_job(store, "text", payload, ext="txt",
                       **({"sha256": stand_in} if recorded else {}))
    delivery, begun = take_job(store, child.consumer, job_id)

    attempt = child._attempt(delivery, begun)

    expected = stand_in if recorded else hashlib.sha256(payload).hexdigest()
    assert attempt.text == "plain words"
    assert (begun.sha256, attempt.sha256, attempt.metadata["sha256"]) == (
        stand_in if recorded else "", expected, expected)


def test_a_finish_whose_answer_was_lost_and_retried_still_logs_job_done_once(
        child, store, monkeypatch) -> None:
    # redis-py sends FINISH again when the connection drops before its answer: the
    # first ran, so the second finds the job final. It was this child's own FINISH.
    delivery, begun = taken(store, child.consumer)
    finish = store.finish

    def answer_lost_then_retried(*args, **kwargs):
        finish(*args, **kwargs)
        return finish(*args, **kwargs)

    monkeypatch.setattr(store, "finish", answer_lost_then_retried)
    monkeypatch.setattr(child, "_may_take_next", lambda: False)
    with capture_logs() as events:
        child._settle(delivery, begun, Attempt("the text", None, 12.5))

    assert record(store, delivery.job_id)["state"] == "done"
    assert one(events, "job.done")["chars"] == 8
    assert not [e for e in events if e["event"] == "job.duplicate"]
    assert child.slot.done == 1 and child.slot.unlogged() is None


def test_a_finish_that_finds_the_job_finished_before_it_was_sent_logs_job_duplicate(
        child, store) -> None:
    delivery, begun = taken(store, child.consumer)
    store.finish(delivery, {"state": "done", "chars": 3, "text": "abc", "duration_ms": 1})
    with capture_logs() as events:
        child._settle(delivery, begun, Attempt("the text", None, 12.5))

    assert one(events, "job.duplicate")
    assert not [e for e in events if e["event"] == "job.done"]
    assert child.slot.done == 0 and child.slot.unlogged() is None


def test_a_document_fault_fails_the_job_at_once_without_moving_the_breaker(
        child, store) -> None:
    delivery, begun = taken(store, child.consumer)
    with capture_logs() as events:
        child._settle(delivery, begun, Attempt(None, CorruptDocument("not a PDF"), 3.0))

    job = record(store, delivery.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "corrupt_document")
    assert store.client.xlen(DEAD_LETTERS) == 0 and not queued_again(store, delivery.job_id)
    assert "total_failures" not in breaker(store)
    assert one(events, "job.failed")["error_code"] == "corrupt_document"


def test_a_machinery_fault_before_the_last_attempt_queues_the_job_again(
        child, store) -> None:
    delivery, begun = taken(store, child.consumer)
    with capture_logs() as events:
        child._settle(delivery, begun, Attempt(None, MachineryError("exit 1"), 3.0))

    job = record(store, delivery.job_id)
    assert (job["state"], job["error_code"]) == ("queued", "extractor_failed")
    assert queued_again(store, delivery.job_id)
    assert breaker(store)["consecutive_failures"] == "1"
    retry = one(events, "job.retry")
    assert (retry["state"], retry["attempt"], retry["error_code"]) == (
        "queued", 1, "extractor_failed")
    assert child.slot.retried == 1


def test_a_full_spool_is_retried_later_and_never_moves_the_breaker(child, store) -> None:
    delivery, begun = taken(store, child.consumer)
    child._settle(delivery, begun, Attempt(None, SpoolFull("no space left"), 1.0))

    assert record(store, delivery.job_id)["state"] == "queued"
    assert not queued_again(store, delivery.job_id)  # deferred, not on the stream
    [(member, ready_at)] = store.client.zrange(DEFERRED, 0, -1, withscores=True)
    assert member.decode() == f"pdf|{delivery.job_id}" and ready_at > time.time() + 3
    assert "consecutive_failures" not in breaker(store)


def test_a_machinery_fault_on_the_last_attempt_fails_and_dead_letters_the_job(
        child, store) -> None:
    queue_job(store)
    for _ in range(MAX_ATTEMPTS - 1):  # earlier attempts, each re-queued
        delivery, begun = store.take(child.consumer)
        store.retry(delivery, consumer=child.consumer, error_code="extractor_failed",
                    error_message="exit 1")
    delivery, begun = store.take(child.consumer)
    assert begun.attempts == MAX_ATTEMPTS
    with capture_logs() as events:
        child._settle(delivery, begun, Attempt(None, MachineryError("exit 1"), 3.0))

    job = record(store, delivery.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "extractor_failed")
    [(_id, letter)] = store.client.xrange(DEAD_LETTERS)
    assert letter[b"job"].decode() == delivery.job_id
    failed = one(events, "job.failed")
    assert failed["dead_letter"] is True and failed["attempt"] == MAX_ATTEMPTS


def test_a_job_delivered_past_its_attempts_is_given_up_with_its_last_error(
        child, store) -> None:
    queue_job(store)
    for _ in range(MAX_ATTEMPTS):  # every attempt died with the child, say
        delivery, _begun = store.take(child.consumer)
        store.retry(delivery, consumer="test-master", error_code="memory_limit",
                    error_message="killed")
    delivery, begun = store.take(child.consumer)
    assert begun.verdict == "exhausted"
    with capture_logs() as events:
        child.handle(delivery, begun)

    job = record(store, delivery.job_id)
    assert (job["state"], job["error_code"]) == ("failed", "memory_limit")
    assert store.client.xlen(DEAD_LETTERS) == 1
    failed = one(events, "job.failed")
    assert set(failed) >= set(JobSummary._fields) and failed["dead_letter"] is True


def test_every_summary_line_carries_the_same_fields(child, store) -> None:
    """job.done, job.failed, job.retry: one shape, so a log reader needs no case each."""
    with capture_logs() as events:
        for attempt in (Attempt("text", None, 1.0), Attempt(None, CorruptDocument("x"), 1.0),
                        Attempt(None, MachineryError("x"), 1.0)):
            child._settle(*taken(store, child.consumer), attempt)

    summaries = [e for e in events if e["event"] in ("job.done", "job.failed", "job.retry")]
    assert [e["event"] for e in summaries] == ["job.done", "job.failed", "job.retry"]
    for summary in summaries:
        assert set(JobSummary._fields) <= set(summary), summary


# --- the master: re-queue on death, the summary a dead child did not log ---------------------
def test_the_job_of_a_child_killed_at_its_deadline_is_requeued_at_once_and_spares_the_breaker(
        pool, store, settings) -> None:
    delivery, _begun = taken(store, consumer_name(settings, 0))
    pool.slots[0].begin(delivery.job_id, delivery.entry_id, delivery.family)
    with capture_logs() as events:
        pool._requeue(0, "deadline")

    job = record(store, delivery.job_id)
    assert (job["state"], job["error_code"]) == ("queued", "extraction_timeout")
    assert queued_again(store, delivery.job_id)
    assert "consecutive_failures" not in breaker(store)  # the document's cost, not the tool's
    history = store.client.lrange(history_key(delivery.job_id), 0, -1)
    assert master_consumer_name(settings).encode() in history[-1]
    assert one(events, "job.requeued")["reason"] == "deadline"
    assert not pool.slots[0].busy and pool.requeued == 1


def test_the_job_of_a_child_that_crashed_mid_job_counts_once_against_its_breaker(
        pool, store, settings) -> None:
    delivery, _begun = taken(store, consumer_name(settings, 0))
    pool.slots[0].begin(delivery.job_id, delivery.entry_id, delivery.family)
    pool._requeue(0, "crashed")

    assert breaker(store)["consecutive_failures"] == "1"


def test_the_job_of_a_child_stopped_by_shutdown_stays_pending_for_the_slots_next_child(
        pool, store, settings) -> None:
    delivery, _begun = taken(store, consumer_name(settings, 0))
    pool.slots[0].begin(delivery.job_id, delivery.entry_id, delivery.family)
    pool._requeue(0, "shutdown")

    assert record(store, delivery.job_id)["state"] == "processing"
    assert not queued_again(store, delivery.job_id)
    [entry] = store.read(consumer_name(settings, 0), 0, own_pending=True)
    assert entry.job_id == delivery.job_id
    assert "total_failures" not in breaker(store)


def test_a_job_the_child_finished_before_it_died_is_not_requeued(pool, store,
                                                                 settings) -> None:
    delivery, _begun = taken(store, consumer_name(settings, 0))
    pool.slots[0].begin(delivery.job_id, delivery.entry_id, delivery.family)
    store.finish(delivery, {"state": "done", "chars": 1, "text": "x"})
    with capture_logs() as events:
        pool._requeue(0, "killed")

    assert record(store, delivery.job_id)["state"] == "done"
    assert not queued_again(store, delivery.job_id)
    assert not [e for e in events if e["event"] == "job.requeued"] and pool.requeued == 0


def reap_after_sigkill(pool: Pool, slot_no: int = 0) -> list[dict]:
    """Reap a real forked child of `slot_no` that SIGKILLed itself; the master's events."""
    process = multiprocessing.get_context("fork").Process(target=_die_by_sigkill)
    process.start()
    pool.children[slot_no] = process
    process.join(5)
    with capture_logs() as events:
        assert pool._reap({process.sentinel}) is None
    assert one(events, "child.exited")["reason"] == "killed"
    return events


SUMMARY = JobSummary(state="done", format="pdf", bytes=5, attempt=1, duration_ms=7.0, chars=4)


@pytest.mark.parametrize("answer_seen", [True, False], ids=["stored", "answer-lost"])
def test_reaping_a_child_that_died_after_its_finish_landed_logs_the_summary_for_it(
        pool, store, settings, answer_seen) -> None:
    delivery, _begun = taken(store, consumer_name(settings, 0))
    slot = pool.slots[0]
    slot.begin(delivery.job_id, delivery.entry_id, delivery.family)
    slot.remember(delivery.job_id, SUMMARY)  # as the child does just before FINISH
    store.finish(delivery, {"state": "done", "chars": 4, "text": "text"})
    if answer_seen:
        slot.stored()
    events = reap_after_sigkill(pool)

    done = one(events, "job.done")
    assert (done["job_id"], done["logged_by"], done["chars"], done["bytes"]) == (
        delivery.job_id, "master", 4, 5)
    assert not [e for e in events if e["event"].startswith("job.requeue")]
    assert slot.unlogged() is None and not slot.busy and slot.done == 1


def test_reaping_a_child_that_died_before_its_finish_landed_requeues_and_logs_no_summary(
        pool, store, settings) -> None:
    delivery, _begun = taken(store, consumer_name(settings, 0))
    slot = pool.slots[0]
    slot.begin(delivery.job_id, delivery.entry_id, delivery.family)
    slot.remember(delivery.job_id, SUMMARY)  # killed before FINISH reached Redis
    events = reap_after_sigkill(pool)

    assert not [e for e in events if e["event"] == "job.done"]
    assert one(events, "job.requeued")["job_id"] == delivery.job_id
    assert record(store, delivery.job_id)["state"] == "queued"
    assert slot.unlogged() is None and slot.done == 0


def test_emptying_a_job_folder_removes_what_the_tools_wrote_and_nothing_a_link_points_to(
        tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the job's")
    folder = tmp_path / "slot-0" / "job"
    (folder / "gs_tmp" / "deep").mkdir(parents=True)
    (folder / "gs_tmp" / "deep" / "page.bin").write_bytes(b"x" * 4096)
    (folder / "0123.pdf").write_bytes(b"%PDF-")
    (folder / "to-outside").symlink_to(outside)  # a tool's link: removed, not followed
    empty_folder(folder)
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert (outside / "keep.txt").read_text() == "not the job's"
    empty_folder(tmp_path / "never-made")  # a folder no job made yet: nothing to do


def test_reaping_a_child_killed_mid_job_removes_what_the_jobs_tools_wrote(
        pool, store, settings) -> None:
    delivery, _begun = taken(store, consumer_name(settings, 0))
    pool.slots[0].begin(delivery.job_id, delivery.entry_id, delivery.family)
    folder = job_folder(settings.spool_dir, 0)
    (folder / "gs_tmp").mkdir(parents=True)
    (folder / "gs_tmp" / "big.bin").write_bytes(b"x" * 65536)
    reap_after_sigkill(pool)

    assert not folder.exists()
    assert record(store, delivery.job_id)["state"] == "queued"


# --- what a job's tools may write, and see ---------------------------------------------------
def _tool_error(exit_code: int) -> MachineryError:
    """The error extract_text raises for a tool that ended with `exit_code`."""
    try:
        raise MachineryError("the tool failed") from ShellError("ps2ascii x", exit_code,
                                                                 b"", b"")
    except MachineryError as exc:
        return exc


@pytest.mark.parametrize(("exit_code", "past_limit"), [
    (-signal.SIGXFSZ, True),  # the tool itself, killed by SIGXFSZ
    (128 + signal.SIGXFSZ, True),  # as a shell wrapper (ps2ascii) reports it
    (-signal.SIGSEGV, False), (1, False),
])
def test_a_tool_stopped_by_the_file_size_limit_fails_the_job_output_limit(
        child, exit_code, past_limit) -> None:
    found = child._output_limit(_tool_error(exit_code))
    assert isinstance(found, OutputLimit) is past_limit
    if found is not None:
        assert found.code == "output_limit" and "spool" not in str(found)
        assert settlement(found, 1, MAX_ATTEMPTS) is Settlement.FAILED  # never retried


def test_the_watch_threads_disk_verdict_and_an_efbig_write_also_read_as_output_limit(
        child) -> None:
    try:
        raise MachineryError("OSError") from OSError(errno.EFBIG, "File too large")
    except MachineryError as exc:
        assert isinstance(child._output_limit(exc), OutputLimit)
    child.slot.output_exceeded = 1  # the watch thread killed the job's tools
    assert isinstance(child._output_limit(_tool_error(-signal.SIGKILL)), OutputLimit)


def test_the_file_size_limit_binds_a_tool_only_while_the_job_runs(tmp_path) -> None:
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    with file_size_limit(4096):
        writer = subprocess.run(["dd", "if=/dev/zero", f"of={tmp_path / 'out'}", "bs=1024",
                                 "count=64"], capture_output=True)
    assert writer.returncode != 0  # dd died of SIGXFSZ at 4 KiB
    assert (tmp_path / "out").stat().st_size == 4096
    assert resource.getrlimit(resource.RLIMIT_FSIZE) == before


def test_a_childs_environment_keeps_what_tools_need_and_no_secret() -> None:
    environ = {"PATH": "/usr/bin", "HOME": "/home/t", "LANG": "C.UTF-8", "LC_ALL": "C",
               "TMPDIR": "/x", "OMP_THREAD_LIMIT": "1", "API_KEY": "k", "CALLBACK_SECRET": "s",
               "REDIS_URL": "redis://:pw@h/0", "TEXTRACTD_HOME": "/srv/t", "EXTRA": "e"}
    kept = minimal_environment(environ, extra=("EXTRA",))
    assert set(kept) == {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OMP_THREAD_LIMIT",
                         "EXTRA"}
    assert "EXTRA" not in minimal_environment(environ)


# --- a loop that stops turning ---------------------------------------------------------------
def _sleep_in_own_group() -> None:
    os.setpgid(0, 0)  # as a pool child does, so the master's killpg reaches it
    time.sleep(30)


def test_the_master_kills_an_idle_child_whose_loop_stopped_turning(pool,
                                                                   settings) -> None:
    slot = pool.slots[0]
    process = multiprocessing.get_context("fork").Process(target=_sleep_in_own_group)
    process.start()
    pool.children[0] = process
    wait_for(lambda: os.getpgid(process.pid) == process.pid, 2, "the child's own group")
    slot.turned_at = time.monotonic() - loop_stall_limit(settings) + 1
    pool._enforce_deadlines()
    assert process.is_alive() and slot.kill_reason == KillReason.NONE  # not yet

    slot.turned_at = time.monotonic() - loop_stall_limit(settings) - 1
    with capture_logs() as events:
        pool._enforce_deadlines()
    process.join(5)
    assert slot.kill_reason == KillReason.WEDGED and process.exitcode == -signal.SIGKILL
    assert one(events, "child.wedged")["child_pid"] == process.pid
    assert exit_reason(process.exitcode, slot.kill_reason) == "wedged"


def test_a_busy_child_whose_loop_waits_on_its_job_is_not_taken_for_wedged(settings) -> None:
    slot = make_slots(1)[0]
    slot.turned_at = time.monotonic() - 1000
    slot.begin("job", "1-0", "pdf")  # a job has its own deadline
    assert slot.stalled_for(time.monotonic()) == 0
    slot.clear()
    assert slot.stalled_for(time.monotonic()) > 999


def test_the_sweep_goes_on_while_a_starting_child_removes_and_remakes_its_slot(
        tmp_path: Path) -> None:
    # A child starting removes and remakes its slot's folder (Child.boot) while the master
    # may be sweeping: a folder gone between the listing and the walk once crashed it.
    spool = tmp_path / "spool"
    stale = spool / "slot-7" / "left.pdf"  # a slot this pool no longer has
    stale.parent.mkdir(parents=True)
    slot = spool / "slot-0"
    slot.mkdir()
    churn = subprocess.Popen(
        [sys.executable, "-c", "import os, shutil, sys\n"
         "while True:\n"
         "    shutil.rmtree(sys.argv[1], ignore_errors=True)\n"
         "    os.makedirs(os.path.join(sys.argv[1], 'tmp'), exist_ok=True)", str(slot)])
    try:
        for _ in range(3000):
            stale.parent.mkdir(exist_ok=True)  # the sweep removes the whole stale slot
            stale.write_bytes(b"x" * 10)
            assert sweep_spool(spool, pool_size=2, max_age=60) == (1, 10)
    finally:
        churn.kill()
        churn.wait()


def test_a_child_measuring_itself_counts_its_tools_memory_as_the_full_walk_does() -> None:
    tree = OwnTree()
    alone = tree.rss_mb()
    # A tool holding 100 MB, with a grandchild of its own (as ps2ascii runs gs).
    with subprocess.Popen(
            [sys.executable, "-c", "import subprocess, sys, time; b = bytearray(100 << 20); "
             "b[::4096] = b'x' * len(b[::4096]); "
             "subprocess.Popen(['sleep', '30']); print('ready', flush=True); time.sleep(30)"],
            stdout=subprocess.PIPE) as tool:
        try:
            assert tool.stdout.readline() == b"ready\n"
            with_tool = tree.rss_mb()
            assert with_tool > alone + 100
            # (the test process may have children of its own: servers of other fixtures)
            assert abs(with_tool - tree_rss_mb(os.getpid())) < 2  # two reads a moment apart
            assert len(descendants(tool.pid)) == 1
        finally:
            for pid in [*descendants(tool.pid), tool.pid]:
                os.kill(pid, signal.SIGKILL)
    assert tree.rss_mb() < alone + 50


def test_the_heartbeat_is_withdrawn_while_an_idle_loop_is_quiet_and_returns_when_it_turns(
        settings, server) -> None:
    client: redis.Redis = server.client()
    slot = make_slots(1)[0]
    name = consumer_name(settings, 0)
    watchdog = Watchdog(settings, 0, name, slot, lambda: 7, OwnTree())
    slot.turned()
    watchdog.check(client)
    assert client.exists(heartbeat_key(name))

    slot.turned_at = time.monotonic() - loop_quiet_max(settings) - 1
    with capture_logs() as events:
        watchdog.check(client)
    assert not client.exists(heartbeat_key(name))
    assert one(events, "child.loop_stalled")["stalled_s"] > loop_quiet_max(settings)
    assert loop_quiet_max(settings) < loop_stall_limit(settings)  # health sees it first

    slot.turned()
    watchdog.check(client)
    assert client.exists(heartbeat_key(name))
