"""A scanned PDF sent with method=tesseract is OCRed page by page across the pool, with the
delivery guarantees of a job: real stacks, real pdftoppm and tesseract (a fake one first
on PATH only where a test must catch a page mid-way or make one fail)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import textract

from daemon.config import Settings
from daemon.documents.formats import FORMATS
from daemon.pool import scans
from daemon.store import (
    DEPTH,
    GROUP,
    STREAM,
    AsyncJobStore,
    JobStore,
    pages_key,
)
from devtools.scans import make_scan
from devtools.stack import Stack, wait_for
from tests.client import Client
from tests.conftest import queue_job
from tests.fakes import FakeTools, events, summary_lines

SCAN_PAGES = 10
SCAN_SHA256 = "7" * 64  # the hash the api filed with the job's record


# --- the scripts alone, on a throwaway redis-server ---------------------------------------
def fanned_out(store: JobStore, pages: int, in_flight: int) -> str:
    """A scan job taken by consumer c-0 and cut into `pages` page tasks."""
    job_id = queue_job(store, family="ocr", method="tesseract", sha256=SCAN_SHA256)
    delivery, begun = store.take("c-0")
    assert begun.verdict == "run"
    assert store.fan_out(delivery, pages, in_flight) == min(pages, in_flight)
    assert store.fan_out(delivery, pages, in_flight) == 0  # a second call: nothing more
    return job_id


def page_entries(store: JobStore, job_id: str) -> list[int]:
    return [int(f[b"page"]) for _, f in store.client.xrange(STREAM)
            if f.get(b"job") == job_id.encode() and b"page" in f]


def test_a_fan_out_queues_the_first_pages_and_acknowledges_the_jobs_entry(
        store: JobStore) -> None:
    job_id = fanned_out(store, pages=5, in_flight=2)
    assert page_entries(store, job_id) == [1, 2]
    assert store.client.xpending(STREAM, GROUP)["pending"] == 0  # the job's entry is acked
    assert int(store.client.get(DEPTH)) == 1  # still one job waiting for its result
    assert store.client.hget(f"textractd:job:{job_id}", "state") == b"processing"


def test_each_page_stored_queues_the_next_once_and_the_last_is_left_to_assemble(
        store: JobStore) -> None:
    job_id = fanned_out(store, pages=3, in_flight=2)
    first, begun = store.take("c-0")
    assert (first.page, begun.verdict, begun.page, begun.pages) == (1, "run", 1, 3)
    assert begun.sha256 == SCAN_SHA256  # the scan's: a page's metadata is the job's
    assert store.finish_page(first, b"one").last is False
    assert page_entries(store, job_id) == [1, 2, 3]
    again = store.finish_page(first, b"other")  # a second delivery's store
    assert again.stored and again.done == 1 and page_entries(store, job_id) == [1, 2, 3]
    for _ in range(2):
        delivery, _ = store.take("c-1")
        stored = store.finish_page(delivery, f"page {delivery.page}".encode())
    assert stored.last and stored.done == 3
    assert store.page_outputs(job_id, 3) == [b"one", b"page 2", b"page 3"]
    # the last page's entry stays pending: a death now is assembled by its redelivery
    pending = store.client.xpending_range(STREAM, GROUP, "-", "+", 10)
    assert [p["message_id"].decode() for p in pending] == [delivery.entry_id]
    assembling = store.begin(delivery, "c-2")
    assert (assembling.verdict, assembling.sha256, assembling.pages) == (
        "assemble", SCAN_SHA256, 3)


def test_a_page_left_by_a_vanished_consumer_is_reclaimed_as_that_page(store: JobStore) -> None:
    fanned_out(store, pages=2, in_flight=2)
    taken, begun = store.take("c-0")  # ... and c-0 vanishes mid-page
    assert (taken.page, begun.attempts) == (1, 1)
    claimer = JobStore(store.client, dataclasses.replace(store.settings, claim_idle=0.05))
    (claimed,) = wait_for(lambda: claimer.autoclaim("c-1", "0-0")[1], 5,
                          "the idle page entry")
    assert claimed.page == 1 and claimed.entry_id == taken.entry_id
    again = claimer.begin(claimed, "c-1")
    assert (again.verdict, again.page, again.attempts) == ("run", 1, 2)  # counted per page


def test_a_page_retried_past_max_attempts_is_exhausted_with_its_last_error(
        store: JobStore) -> None:
    job_id = fanned_out(store, pages=2, in_flight=1)
    two = JobStore(store.client, dataclasses.replace(store.settings, max_attempts=2))
    for attempt in (1, 2):
        delivery, begun = two.take("c-0")
        assert (delivery.page, begun.verdict, begun.attempts) == (1, "run", attempt)
        # the master re-queueing the page of a child that died at the deadline
        settled = two.retry(delivery, consumer="c-master", error_code="extraction_timeout",
                            error_message=f"killed at attempt {attempt}", died=True)
        assert settled.written
        assert page_entries(store, job_id)[-1] == 1  # the same page, queued again
    delivery, begun = two.take("c-1")
    assert (begun.verdict, begun.attempts) == ("exhausted", 2)
    assert (begun.error_code, begun.error_message) == ("extraction_timeout",
                                                       "killed at attempt 2")
    assert store.client.hget(f"textractd:job:{job_id}", "state") == b"processing"


def test_a_job_deleted_mid_scan_takes_its_pages_with_it(store: JobStore, redis_server) -> None:
    import asyncio

    import redis.asyncio as aredis

    job_id = fanned_out(store, pages=4, in_flight=2)

    async def delete() -> bool:
        client = aredis.Redis.from_url(redis_server.url)
        try:
            return await AsyncJobStore(client, store.settings).delete(job_id)
        finally:
            await client.aclose()

    assert asyncio.run(delete())
    assert not store.client.exists(pages_key(job_id))
    delivery, begun = store.take("c-0")
    assert delivery.page == 1 and begun.verdict == "gone"  # acknowledged and skipped


@pytest.fixture(scope="module")
def scan10(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 10-page scan and textract's own OCR text of it (read once for the module)."""
    path = make_scan(tmp_path_factory.mktemp("scan") / "scan10.pdf", SCAN_PAGES)
    return path, textract.process(str(path), method="tesseract").decode("utf-8")


def upload_scan(client: Client, path: Path, wait: float = 120) -> dict:
    reply = client.upload(path.name, path.read_bytes(), method="tesseract", wait=wait)
    assert reply.status in (200, 202), reply.body
    return reply.json()


def finished(client: Client, job_id: str, timeout: float = 120) -> dict:
    def final() -> dict | None:
        job = client.job(job_id).json()
        return job if job["state"] in ("done", "failed") else None

    return wait_for(final, timeout, f"job {job_id} to end", interval=0.1)


@pytest.fixture(scope="module")
def fake_tools(tmp_path_factory: pytest.TempPathFactory) -> FakeTools:
    """A fake tesseract first on the module stack's PATH (the real one in mode `pass`)."""
    return FakeTools(tmp_path_factory.mktemp("fake-tools"))


@pytest.fixture(scope="module")
def scan_stack(fake_tools: FakeTools) -> Iterator[Stack]:
    """One 2-worker stack for the fan-out tests, OCR_PAGES_IN_FLIGHT at its default (the
    worker count); each test sets the fake tesseract's mode it needs and reads only its
    own job's events."""
    stack = Stack(env=fake_tools.env(WORKER_PROCESSES=2, MAX_ATTEMPTS=2)).start()
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


def dead_letters_of(stack: Stack, job_id: str) -> int:
    with stack.redis() as r:
        return sum(1 for _, f in r.xrange("textractd:dead") if f[b"job"] == job_id.encode())


def test_a_ten_page_scan_is_ocred_across_both_workers_as_textract_reads_it(
        scan_stack: Stack, fake_tools: FakeTools, scan10) -> None:
    path, expected = scan10
    fake_tools.mode("tesseract", "pass")
    stack = scan_stack
    client = Client(stack)
    job = upload_scan(client, path)
    assert job["state"] == "done", job["error"]
    assert job["text"] == expected
    assert job["metadata"]["pages"] == SCAN_PAGES
    pages = client.job(job["id"], pages=1).json()["pages"]
    assert [p["number"] for p in pages] == list(range(1, SCAN_PAGES + 1))
    # each page's slice is that page's own output, in page order
    for number, page in enumerate(pages, 1):
        assert page["text"].startswith(f"Page {number} of the scan"), page
    assert "".join(p["text"] for p in pages) == expected
    done = summary_lines(stack, job["id"], "page.done", SCAN_PAGES)
    assert sorted(e["page"] for e in done) == list(range(1, SCAN_PAGES + 1))
    consumers = {e["consumer"] for e in done}
    assert len(consumers) == 2, consumers  # both workers took page tasks
    assert len(events(stack, "job.fanned_out", job_id=job["id"])) == 1
    assert len(summary_lines(stack, job["id"])) == 1
    # the page bookkeeping went with the job's end
    with stack.redis() as r:
        assert not r.exists(pages_key(job["id"]))
        assert int(r.get(DEPTH) or 0) == 0


@pytest.fixture(scope="module")
def scan3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 3-page scan and textract's own OCR text of it."""
    path = make_scan(tmp_path_factory.mktemp("scan") / "scan3.pdf", 3, seed=3)
    return path, textract.process(str(path), method="tesseract").decode("utf-8")


def test_a_page_whose_child_is_killed_is_retried_and_the_job_ends_with_the_whole_text(
        scan_stack: Stack, fake_tools: FakeTools, scan3) -> None:
    path, expected = scan3
    stack = scan_stack
    # the tesseract to catch must be this job's, not one an earlier test left running
    wait_for(lambda: not fake_tools.running(), 60, "earlier tests' tools to end")
    fake_tools.mode("tesseract", "slow:1.5")  # long enough to catch a page mid-way
    client = Client(stack)
    job_id = upload_scan(client, path, wait=0)["id"]
    worker = wait_for(fake_tools.worker_of_running_tool, 30, "a page task's tesseract")
    os.kill(worker.pid, signal.SIGKILL)
    job = finished(client, job_id)
    assert job["state"] == "done", job["error"]
    assert job["text"] == expected
    requeued = events(stack, "job.requeued", job_id=job_id)
    assert len(requeued) == 1 and requeued[0]["page"] in (1, 2), requeued
    killed_page = requeued[0]["page"]
    done = {e["page"]: e for e in summary_lines(stack, job_id, "page.done", 3)}
    assert sorted(done) == [1, 2, 3]
    assert done[killed_page]["attempt"] == 2  # attempts are counted per page
    assert all(e["attempt"] == 1 for page, e in done.items() if page != killed_page)
    assert len(summary_lines(stack, job_id)) == 1


@pytest.mark.parametrize(("mode", "code", "page_attempts"), [
    ("segv-page:2", "extractor_failed", 2),  # the machinery, on every attempt: given up
    ("reject-page:2", "corrupt_document", 1),  # the document's fault: at once
])
def test_a_page_that_keeps_failing_fails_the_job_naming_the_page(
        scan_stack: Stack, fake_tools: FakeTools, scan3, mode: str, code: str,
        page_attempts: int) -> None:
    path, _ = scan3
    fake_tools.mode("tesseract", mode)
    stack = scan_stack  # MAX_ATTEMPTS=2
    client = Client(stack)
    job = finished(client, upload_scan(client, path, wait=0)["id"])
    assert job["state"] == "failed"
    assert job["error"]["code"] == code
    assert job["error"]["message"].startswith("page 2: "), job["error"]
    # the job's line is the child's last, and the lines before it come out with it
    assert len(summary_lines(stack, job["id"], "job.failed")) == 1
    failed = events(stack, "page.failed", job_id=job["id"])
    assert [(e["page"], e["attempt"]) for e in failed] == [(2, page_attempts)]
    assert len(events(stack, "page.retry", job_id=job["id"])) == page_attempts - 1
    with stack.redis() as r:
        assert not r.exists(pages_key(job["id"]))
        assert int(r.get(DEPTH) or 0) == 0
    # given up by the machinery: a dead letter an operator can replay
    assert dead_letters_of(stack, job["id"]) == (1 if code == "extractor_failed" else 0)
    # the pages still running when the job failed end acknowledged, nothing re-queued
    with stack.redis() as r:
        wait_for(lambda: outstanding_pages(r, job["id"]) == 0, 60, "the other pages' acks")


def outstanding_pages(r, job_id: str) -> int:
    """Page entries of the job on the stream not yet acknowledged (pending, or not yet
    read), counted from one MULTI so the count is of one moment."""
    with r.pipeline(transaction=True) as pipe:
        pipe.xinfo_groups(STREAM)
        pipe.xpending_range(STREAM, GROUP, "-", "+", 1000)
        pipe.xrange(STREAM, "-", "+")
        groups, pending, entries = pipe.execute()
    group = next(g for g in groups if g["name"] in (GROUP, GROUP.encode()))
    last = _entry_key(group["last-delivered-id"])
    pending_ids = {p["message_id"] for p in pending}
    return sum(1 for entry_id, f in entries
               if (entry_id in pending_ids or _entry_key(entry_id) > last)
               and f.get(b"job") == job_id.encode() and b"page" in f)


def _entry_key(entry_id: bytes | str) -> tuple[int, int]:
    ms, _, seq = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).partition("-")
    return int(ms), int(seq)


def test_with_one_page_in_flight_the_other_worker_serves_another_client_meanwhile(
        make_stack, tools: FakeTools, tmp_path: Path) -> None:
    path = make_scan(tmp_path / "scan4.pdf", 4, seed=4)
    tools.mode("tesseract", "slow:1")
    stack = make_stack(env=tools.env(WORKER_PROCESSES=2, OCR_PAGES_IN_FLIGHT=1))
    client = Client(stack)
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        with stack.redis() as r:
            while not stop.is_set():
                seen.append(outstanding_pages(r, scan_id))
                time.sleep(0.05)

    scan_id = upload_scan(client, path, wait=0)["id"]
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        wait_for(lambda: events(stack, "job.fanned_out", job_id=scan_id), 30, "the fan-out")
        tiny = client.upload("note.txt", b"a second client's tiny job", wait=30).json()
        assert tiny["state"] == "done" and tiny["text"] == "a second client's tiny job"
        assert client.job(scan_id).json()["state"] == "processing"  # served meanwhile
        job = finished(client, scan_id)
    finally:
        stop.set()
        watcher.join()
    assert job["state"] == "done", job["error"]
    assert max(seen) == 1, seen  # never more than OCR_PAGES_IN_FLIGHT page entries
    assert sorted(e["page"] for e in summary_lines(stack, scan_id, "page.done", 4)) == [
        1, 2, 3, 4]


@pytest.mark.parametrize(("ext", "method", "pages", "in_flight", "fans"), [
    ("pdf", "tesseract", 10, -1, True),  # the default: the worker count
    ("pdf", "tesseract", 2, 1, True),  # a page at a time, still handed round
    ("pdf", "tesseract", 10, 0, False),  # off: the whole scan in one child, as before
    ("pdf", "tesseract", 1, 4, False),  # one page: nothing to share out
    ("pdf", "", 10, 4, False),  # pdftotext reads a PDF in milliseconds
    ("pdf", "pdfminer", 10, 4, False),
    ("png", "", None, 4, False),
])
def test_only_a_multi_page_pdf_sent_for_ocr_fans_out(ext: str, method: str, pages: int | None,
                                                      in_flight: int, fans: bool) -> None:
    settings = Settings(worker_processes=2, ocr_pages_in_flight=in_flight)
    assert scans.fans_out(settings, FORMATS[ext], method, pages) is fans



def test_the_bound_defaults_to_the_worker_count(tmp_path: Path) -> None:
    home = {"TEXTRACTD_HOME": str(tmp_path)}  # no .env but the test's
    assert Settings(worker_processes=3).effective_ocr_pages_in_flight == 3
    for env, bound in (({"WORKER_PROCESSES": "2"}, 2), ({"OCR_PAGES_IN_FLIGHT": "5"}, 5)):
        assert Settings.from_env({**home, **env}).effective_ocr_pages_in_flight == bound
