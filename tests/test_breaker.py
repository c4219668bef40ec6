"""Circuit breakers: the Lua arithmetic against a real redis-server, then whole stacks
with a broken `pdftotext` (a real process first on the workers' PATH).

Breaker semantics: CLOSED -> OPEN after CIRCUIT_BREAKER_FAILURE_THRESHOLD machinery
failures of distinct documents in a row (a document's retries and copies count once);
OPEN -> HALF_OPEN once CIRCUIT_BREAKER_RECOVERY_TIMEOUT has passed; HALF_OPEN -> CLOSED
after CIRCUIT_BREAKER_SUCCESS_THRESHOLD successes, back to OPEN on one failure. Document
faults never move a breaker.
"""

from __future__ import annotations

import time

import pytest

from daemon.store import (
    DEFERRED,
    GROUP,
    QUARANTINE,
    STREAM,
    Delivery,
    JobStore,
    Settled,
    breaker_key,
    job_key,
    text_key,
)
from devtools.stack import wait_for
from tests.conftest import queue_job, squash
from tests.fakes import (
    DOCX,
    FOX,
    PDF,
    events,
    job,
    submit,
    submit_many,
    wait_all,
    wait_final,
)


# --- the Lua arithmetic, straight against redis-server --------------------------------
def enqueue(store: JobStore, family: str = "pdf") -> Delivery:
    """Submit a job with the api's own SUBMIT script and read it as consumer c-0."""
    job_id = queue_job(store, family)
    while True:
        # Re-queued copies of earlier test jobs come first: acknowledge them and go on.
        delivery = store.read("c-0", 0)[0]
        if delivery.job_id == job_id:
            return delivery
        store.ack(delivery)


def breaker(store: JobStore, family: str = "pdf") -> dict[str, str]:
    raw = store.client.hgetall(breaker_key(family))
    return {k.decode(): v.decode() for k, v in raw.items()}


def wait_recovery(store: JobStore, family: str = "pdf") -> None:
    reopen = float(breaker(store, family)["opened_at"]) + 0.3
    wait_for(lambda: time.time() > reopen, 2, "the recovery timeout to pass")


def fail_once(store: JobStore, family: str = "pdf") -> Settled:
    delivery = enqueue(store, family)
    assert store.begin(delivery, "c-0").verdict == "run"
    return store.retry(delivery, consumer="c-0", error_code="extractor_failed",
                       error_message="boom", outcome="failure")


def succeed_once(store: JobStore, family: str = "pdf") -> Settled:
    delivery = enqueue(store, family)
    assert store.begin(delivery, "c-0").verdict == "run"
    return store.finish(delivery, {"state": "done", "text": "x"}, outcome="success")


def test_three_consecutive_failures_open_the_breaker_and_a_success_resets_the_count(store):
    fail_once(store)
    fail_once(store)
    succeed_once(store)  # CLOSED: a success resets the consecutive count
    assert breaker(store)["consecutive_failures"] == "0"
    assert fail_once(store)[1:3] == ("closed", "closed")
    assert fail_once(store)[1:3] == ("closed", "closed")
    assert fail_once(store)[1:3] == ("closed", "open")
    state = breaker(store)
    assert state["state"] == "open" and state["times_opened"] == "1"


def test_an_open_breaker_defers_its_family_only_and_half_opens_after_recovery(store):
    for _ in range(3):
        fail_once(store)
    waiting = enqueue(store)
    begun = store.begin(waiting, "c-0")
    assert begun.verdict == "wait"
    assert begun.reopen_at == pytest.approx(float(breaker(store)["opened_at"]) + 0.3)
    assert store.client.hget(job_key(waiting.job_id), "attempts") == b"0"  # not an attempt
    # Another family flows while pdf is open.
    assert store.begin(enqueue(store, "office"), "c-0").verdict == "run"
    # The deferral waits in the deferred set and comes back when due.
    store.retry(waiting, consumer="c-0", ready_at=begun.reopen_at)
    assert store.client.zcard(DEFERRED) == 1
    assert store.promote_deferred() == 0
    wait_recovery(store)
    assert store.promote_deferred() == 1
    again = store.read("c-0", 0)[0]
    assert again.job_id == waiting.job_id
    trial = store.begin(again, "c-0")
    assert trial.verdict == "run" and trial.breaker_transition == "open"  # OPEN -> HALF_OPEN
    assert breaker(store)["state"] == "half_open"


def test_half_open_closes_after_two_successes_and_reopens_on_one_failure(store):
    for _ in range(3):
        fail_once(store)
    wait_recovery(store)
    assert succeed_once(store)[1:3] == ("half_open", "half_open")
    assert succeed_once(store)[1:3] == ("half_open", "closed")  # HALF_OPEN -> CLOSED
    assert breaker(store)["consecutive_failures"] == "0"
    for _ in range(3):
        fail_once(store)
    wait_recovery(store)
    assert fail_once(store)[1:3] == ("half_open", "open")  # HALF_OPEN -> OPEN
    assert breaker(store)["times_opened"] == "3"


def test_document_faults_and_deferrals_never_move_the_breaker(store):
    for _ in range(5):
        delivery = enqueue(store)
        store.begin(delivery, "c-0")
        written, before, after, _quarantined = store.finish(
            delivery, {"state": "failed", "error_code": "corrupt_document"}, outcome="none")
        assert written and (before, after) == ("", "")
    fail_once(store)
    fail_once(store)
    delivery = enqueue(store)
    store.begin(delivery, "c-0")
    store.retry(delivery, consumer="c-0", error_code="disk_full", outcome="none",
                ready_at=time.time() + 60)
    assert breaker(store).get("state", "closed") == "closed"
    assert breaker(store)["consecutive_failures"] == "2"


def test_a_result_is_written_once_and_a_retry_of_an_acknowledged_delivery_is_ignored(store):
    delivery = enqueue(store)
    store.begin(delivery, "c-0")
    assert store.finish(delivery, {"state": "done", "text": "first"}, outcome="success")[0]
    assert not store.finish(delivery, {"state": "done", "text": "second"})[0]
    assert store.client.get(text_key(delivery.job_id)) == b"first"
    # The master re-queueing for a child that had already re-queued the job itself.
    other = enqueue(store)
    store.begin(other, "c-0")
    assert store.retry(other, consumer="c-0", error_code="extractor_failed")[0]
    assert not store.retry(other, consumer="master", error_code="too_many_attempts")[0]
    entries = [f[b"job"].decode() for _id, f in store.client.xrange(STREAM)]
    assert entries.count(other.job_id) == 2  # the first delivery and one re-queue, not two
    assert store.client.xpending(STREAM, GROUP)["pending"] == 0


# --- whole stacks with a broken pdftotext ---------------------------------------------
def distinct_pdfs(count: int) -> list[bytes]:
    """The same text in `count` distinct documents (a comment after %%EOF differs): the
    breaker counts a failure once per document, so a broken tool shows on several."""
    return [PDF.read_bytes() + f"\n% copy {i}\n".encode() for i in range(count)]


def test_a_broken_pdf_tool_opens_the_pdf_breaker_while_docx_flows_and_pdf_jobs_wait(
        make_stack, tools):
    tools.mode("pdftotext", "segv")
    stack = make_stack(env=tools.env(WORKER_PROCESSES=2, MAX_ATTEMPTS=6,
                                     CIRCUIT_BREAKER_RECOVERY_TIMEOUT=3))
    pdfs = [submit(stack, pdf, "distinct.pdf") for pdf in distinct_pdfs(3)]
    with stack.redis() as r:
        wait_for(lambda: r.hget(breaker_key("pdf"), "state") == b"open", 15,
                 "the pdf breaker to open")
        opened_at = float(r.hget(breaker_key("pdf"), "opened_at"))
        # Three distinct documents open it (a retry of one counts once).
        assert int(r.hget(breaker_key("pdf"), "total_failures")) == 3
        # While pdf is open, docx jobs are done and pdf jobs wait in the deferred set.
        docx = submit_many(stack, DOCX, 3)
        done = wait_all(stack, docx, 15)
        assert all(d["state"] == "done" and squash(d["text"]) == FOX for d in done)
        wait_for(lambda: r.zcard(DEFERRED) == 3, 10, "the pdf jobs to be deferred")
        assert all(job(stack, job_id)["state"] == "queued" for job_id in pdfs)
        assert (r.hget(breaker_key("office"), "state") or b"closed") == b"closed"

    tools.mode("pdftotext", "pass")  # the operator fixes the tool
    found = wait_all(stack, pdfs, 20)
    recovered_in = time.time() - opened_at

    assert all(f["state"] == "done" and squash(f["text"]) == FOX for f in found)
    assert recovered_in >= 3.0  # nothing tried before the recovery timeout
    with stack.redis() as r:
        assert r.hget(breaker_key("pdf"), "state") == b"closed"
    transitions = [e["event"] for e in events(stack)
                   if e.get("event", "").startswith("breaker.")]
    assert transitions[:3] == ["breaker.open", "breaker.half_open", "breaker.closed"]
    print(f"\npdf breaker open after 3 tool crashes; docx done meanwhile; pdf jobs done "
          f"{recovered_in:.2f} s after it opened (recovery timeout 3 s); {transitions}")


def test_document_faults_from_the_tool_never_open_a_breaker(make_stack, tools):
    stack = make_stack(env=tools.env(WORKER_PROCESSES=2))
    truncated = PDF.read_bytes()[:600]  # the real pdftotext rejects it: corrupt
    corrupt = submit_many(stack, truncated, 4, "broken.pdf")
    codes = [wait_final(stack, job_id, 15)["error"]["code"] for job_id in corrupt]
    assert codes == ["corrupt_document"] * 4
    tools.mode("pdftotext", "encrypted")
    locked = submit_many(stack, PDF, 4)
    codes = [wait_final(stack, job_id, 15)["error"]["code"] for job_id in locked]
    assert codes == ["encrypted_document"] * 4
    with stack.redis() as r:
        state = r.hgetall(breaker_key("pdf"))
        quarantined = r.zcard(QUARANTINE)
    assert quarantined == 0  # a document that merely fails is never poison
    assert state.get(b"state", b"closed") == b"closed"
    assert int(state.get(b"consecutive_failures", 0)) == 0
    assert not [e for e in events(stack) if e.get("event", "").startswith("breaker.")]
    # Failed once each: a document fault is not retried.
    assert all(job(stack, job_id)["attempts"] == 1 for job_id in corrupt + locked)


def test_a_job_waiting_on_an_open_breaker_fails_extractor_unavailable_after_the_bound(
        make_stack, tools):
    tools.mode("pdftotext", "segv")
    stack = make_stack(env=tools.env(WORKER_PROCESSES=1, MAX_ATTEMPTS=6,
                                     CIRCUIT_BREAKER_RECOVERY_TIMEOUT=60, BREAKER_MAX_WAIT=3))
    first = [submit(stack, pdf, "distinct.pdf") for pdf in distinct_pdfs(3)]
    with stack.redis() as r:
        wait_for(lambda: r.hget(breaker_key("pdf"), "state") == b"open", 15,
                 "the pdf breaker to open")
    started = time.time()
    waiting = submit(stack, PDF)
    found = wait_final(stack, waiting, 15)
    waited = time.time() - started

    assert found["state"] == "failed"
    assert found["error"]["code"] == "extractor_unavailable"
    assert found["attempts"] == 0  # never tried: the breaker kept it from the tool
    assert 3.0 <= waited < 6.0  # the bound, not the 60 s recovery timeout
    assert {wait_final(stack, job_id, 15)["error"]["code"] for job_id in first} <= {
        "extractor_unavailable", "extractor_failed"}
    print(f"\na pdf job behind an open breaker failed extractor_unavailable after "
          f"{waited:.2f} s (BREAKER_MAX_WAIT=3, recovery 60 s)")
