"""A scanned PDF sent with method=tesseract is OCRed page by page across the pool, with the
delivery guarantees of a job: real stacks, real pdftoppm and tesseract (a fake one first
on PATH only where a test must catch a page mid-way or make one fail)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import textract

from daemon.documents.pages import page_texts
from daemon.store import GROUP, STREAM
from devtools.scans import make_scan
from devtools.stack import Stack, wait_for
from tests.client import Client
from tests.fakes import FakeTools, events

SCAN_PAGES = 10


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

    return wait_for(final, timeout, f"job {job_id} to end", interval=0.1)  # type: ignore[return-value]


def test_a_ten_page_scan_is_ocred_across_both_workers_as_textract_reads_it(
        make_stack, scan10) -> None:
    path, expected = scan10
    stack = make_stack(env={"WORKER_PROCESSES": "2", "OCR_PAGES_IN_FLIGHT": "2"})
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
    done = events(stack, "page.done", job_id=job["id"])
    assert sorted(e["page"] for e in done) == list(range(1, SCAN_PAGES + 1))
    consumers = {e["consumer"] for e in done}
    assert len(consumers) == 2, consumers  # both workers took page tasks
    assert len(events(stack, "job.fanned_out", job_id=job["id"])) == 1
    assert len(events(stack, "job.done", job_id=job["id"])) == 1
    # the page bookkeeping went with the job's end
    with stack.redis() as r:
        assert not r.exists(f"textractd:pages:{job['id']}")
        assert int(r.get("textractd:depth") or 0) == 0
