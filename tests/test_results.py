"""Pages, metadata, detection and the result cache through a real stack on the real corpus.

The expected values are read independently of daemon.documents: pdfinfo for PDFs, the zip
part itself for DOCX, the email module for mail headers, hashlib for the hash. Read-only
tests share one stack (conftest's `shared_stack`); the cache tests make their documents
unique (a comment after a PDF's %%EOF, random bytes) so that no other test's upload can
serve or spoil them.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import redis
import redis.asyncio

from daemon.api.results import cache_fields
from daemon.config import Settings
from daemon.documents.formats import FORMATS
from daemon.store import (
    JOB_COUNTERS,
    STREAM,
    AsyncJobStore,
    JobState,
    JobStore,
    ensure_group,
    job_key,
)
from devtools.stack import Stack, wait_for
from tests.client import Client
from tests.conftest import CorpusDoc, corpus_documents

DOCS = corpus_documents()
PDFS = [d for d in DOCS if d.format == "pdf"]
FOUR_PAGES = "py-pdf-sample-files/004-pdflatex-4-pages/pdflatex-4-pages.pdf"


def by_id(doc_id: str) -> CorpusDoc:
    return next(d for d in DOCS if d.id == doc_id)


def pdfinfo_pages(path: Path) -> int:
    out = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True,
                         timeout=30).stdout.decode("utf-8", "replace")
    return int(next(line.split()[-1] for line in out.splitlines()
                    if line.startswith("Pages:")))


def run_job(client: Client, doc: CorpusDoc, **query: object) -> dict:
    """Upload a corpus document and wait for its job to end; the job JSON."""
    ext = doc.kwargs.get("extension")
    reply = client.upload(doc.path.name, doc.path.read_bytes(), wait=120,
                          **({"extension": ext} if ext else {}), **query)
    assert reply.status == 200, reply.body
    return reply.json()


def unique_pdf(doc_id: str = "textract-tests/pdf/raw_text.pdf") -> bytes:
    """A corpus PDF made unique by a comment after %%EOF (every reader ignores it)."""
    return by_id(doc_id).path.read_bytes() + f"\n% {uuid.uuid4().hex}\n".encode()


def worker_events(stack: Stack, event: str, sha256: str) -> list[dict]:
    return [e for e in stack.log_events("workers")
            if e.get("event") == event and e.get("sha256") == sha256]


def finished_count(stack: Stack) -> int:
    with stack.redis() as r:
        return int(r.hget(JOB_COUNTERS, "finished") or 0)


@pytest.fixture(scope="module")
def shared_stack() -> Iterator[Stack]:
    """The module's one stack: conftest's, with the result cache on (test stacks have it
    off, since other tests upload the same documents and expect each to be extracted)."""
    stack = Stack(env={"WORKER_PROCESSES": "2", "RESULT_TTL": "600",
                       "RESULT_CACHE_TTL": "600"}).start()
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


@pytest.fixture(scope="module")
def client(shared_stack: Stack) -> Client:
    return Client(shared_stack)


@pytest.fixture(scope="module")
def pdf_jobs(client: Client) -> dict[str, dict]:
    """Every corpus PDF's job, with ?pages=1, run once for the module."""
    def run(doc: CorpusDoc) -> tuple[str, dict]:
        job = run_job(client, doc)
        reply = client.job(job["id"], pages=1)
        assert reply.status == 200, reply.body
        return doc.id, reply.json()

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(run, PDFS))


# --- pages --------------------------------------------------------------------------------
@pytest.mark.parametrize("doc", PDFS, ids=[d.id for d in PDFS])
def test_every_corpus_pdfs_job_has_the_pages_pdfinfo_counts_joining_into_its_text(
        pdf_jobs: dict[str, dict], doc: CorpusDoc) -> None:
    job = pdf_jobs[doc.id]
    count = pdfinfo_pages(doc.path)
    assert job["state"] == "done"
    assert [p["number"] for p in job["pages"]] == list(range(1, count + 1))
    assert "".join(p["text"] for p in job["pages"]) == job["text"]
    assert job["metadata"]["pages"] == count


def test_one_page_is_served_alone_and_a_missing_page_is_a_clear_error(client: Client,
                                                                      pdf_jobs) -> None:
    job = pdf_jobs[FOUR_PAGES]
    plain = client.job(job["id"]).json()
    assert "pages" not in plain and plain["text"] == job["text"]  # the default is unchanged

    third = client.request("GET", f"/v1/jobs/{job['id']}/text", query={"page": 3})
    assert third.status == 200 and third.text == job["pages"][2]["text"]
    assert third.text and third.text != job["text"]

    beyond = client.request("GET", f"/v1/jobs/{job['id']}/text", query={"page": 5})
    assert beyond.status == 404
    assert beyond.json()["error"]["code"] == "page_not_found"
    assert beyond.json()["error"]["pages"] == 4
    for bad in ("0", "x", "-1"):
        reply = client.request("GET", f"/v1/jobs/{job['id']}/text", query={"page": bad})
        assert reply.status == 400 and reply.json()["error"]["code"] == "bad_request", bad
    assert client.job(job["id"], pages="yes").json()["error"]["code"] == "bad_request"


def commands_on(stack: Stack, key_part: str, action) -> list[str]:
    """The Redis commands naming `key_part` that `action()` made, as MONITOR saw them."""
    marker = f"end-{uuid.uuid4().hex}"
    with stack.redis() as r, r.monitor() as monitor:
        action()
        with stack.redis() as other:
            other.echo(marker)
        seen = []
        while marker not in (command := monitor.next_command()["command"]):
            if key_part in command:
                seen.append(command.split()[0])
    return seen


def test_a_done_job_with_its_pages_is_read_from_redis_once(client: Client, pdf_jobs,
                                                          shared_stack: Stack) -> None:
    job = pdf_jobs[FOUR_PAGES]
    replies = []
    commands = commands_on(shared_stack, job["id"],
                           lambda: replies.append(client.job(job["id"], pages=1)))
    assert replies[0].status == 200 and len(replies[0].json()["pages"]) == 4
    # one pipeline: the record and the text (its owner checked on the record as read)
    assert sorted(commands) == ["GET", "HGETALL"], commands


def test_a_document_without_pages_says_so(client: Client) -> None:
    job = run_job(client, by_id("textract-tests/docx/raw_text.docx"))
    assert client.job(job["id"], pages=1).json()["pages"] is None
    reply = client.request("GET", f"/v1/jobs/{job['id']}/text", query={"page": 1})
    assert reply.status == 404 and reply.json()["error"]["code"] == "no_pages"


def test_a_presentation_has_a_page_per_slide(client: Client) -> None:
    import pptx

    doc = by_id("textract-tests/pptx/raw_text.pptx")
    job = run_job(client, doc)
    pages = client.job(job["id"], pages=1).json()["pages"]
    assert len(pages) == len(pptx.Presentation(str(doc.path)).slides)
    assert "".join(p["text"] for p in pages) == job["text"]


def test_a_scanned_pdf_read_through_ocr_has_its_pages(client: Client) -> None:
    doc = by_id("textract-tests/pdf/ocr_text.pdf")
    job = run_job(client, doc, method="tesseract")
    pages = client.job(job["id"], pages=1).json()["pages"]
    assert job["state"] == "done" and job["method"] == "tesseract"
    assert len(pages) == pdfinfo_pages(doc.path) == 3
    assert "".join(p["text"] for p in pages) == job["text"]
    assert all(p["text"].strip() for p in pages)  # each page's OCR output, not one blob


# --- metadata -----------------------------------------------------------------------------
def test_a_pdfs_metadata_is_what_pdfinfo_and_hashlib_read(pdf_jobs) -> None:
    doc = by_id("textract-tests/pdf/raw_text.pdf")
    meta = pdf_jobs[doc.id]["metadata"]
    out = subprocess.run(["pdfinfo", "-enc", "UTF-8", str(doc.path)], capture_output=True,
                         check=True, timeout=30).stdout.decode()
    info = {k: v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    assert meta["content_type"] == "application/pdf"
    assert meta["title"] == info["Title"] and meta["author"] == info["Author"]
    assert meta["producer"] == info["Producer"]
    assert meta["sha256"] == hashlib.sha256(doc.path.read_bytes()).hexdigest()
    assert meta["chars"] == len(pdf_jobs[doc.id]["text"])
    assert meta["words"] == len(pdf_jobs[doc.id]["text"].split())


def test_a_docx_jobs_metadata_is_its_core_properties(client: Client) -> None:
    doc = by_id("textract-tests/docx/raw_text.docx")
    meta = run_job(client, doc)["metadata"]
    with zipfile.ZipFile(doc.path) as zf:
        core = ET.fromstring(zf.read("docProps/core.xml"))
    ns = {"dc": "http://purl.org/dc/elements/1.1/", "dcterms": "http://purl.org/dc/terms/"}
    assert meta["content_type"] == FORMATS["docx"].mime
    assert meta["author"] == core.findtext("dc:creator", namespaces=ns)
    assert meta["created"] == core.findtext("dcterms:created", namespaces=ns)
    assert meta["modified"] == core.findtext("dcterms:modified", namespaces=ns)
    assert meta["sha256"] == hashlib.sha256(doc.path.read_bytes()).hexdigest()


def test_a_mail_jobs_metadata_is_its_headers(client: Client) -> None:
    doc = by_id("textract-tests/eml/raw_text.eml")
    meta = run_job(client, doc)["metadata"]
    headers = message_from_bytes(doc.path.read_bytes(), policy=policy.default)
    assert meta["content_type"] == FORMATS["eml"].mime
    assert meta["title"] == headers["Subject"] and meta["author"] == headers["From"]
    assert meta["created"] == parsedate_to_datetime(headers["Date"]).astimezone(UTC) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_failed_job_has_no_metadata_and_its_summary_line_names_its_hash(
        client: Client, shared_stack: Stack) -> None:
    data = b"%PDF-1.4\n" + uuid.uuid4().hex.encode() + b" not a pdf body\n"
    job = client.upload("broken.pdf", data, wait=60).json()
    assert job["state"] == "failed" and "metadata" not in job
    sha = hashlib.sha256(data).hexdigest()
    wait_for(lambda: worker_events(shared_stack, "job.failed", sha), 10, "job.failed line")


# --- detect -------------------------------------------------------------------------------
@pytest.mark.parametrize("doc", DOCS, ids=[d.id for d in DOCS])
def test_detect_names_each_corpus_documents_format_and_mime_type(client: Client,
                                                                doc: CorpusDoc) -> None:
    ext = doc.kwargs.get("extension")
    reply = client.upload(doc.path.name, doc.path.read_bytes(), path="/v1/detect",
                          **({"extension": ext} if ext else {}))
    assert reply.status == 200, reply.body
    assert reply.json() == {"format": doc.format, "mime_type": FORMATS[doc.format].mime,
                            "family": FORMATS[doc.format].family}


@pytest.mark.parametrize("filename,data,query", [
    ("garbage.bin", b"\x00\x01\x02 nothing known", {}),
    ("lies.pdf", b"PK\x03\x04 not a zip at all", {}),
    ("empty.txt", b"", {}),
    ("raw.txt", b"plain words", {"method": "tesseract"}),
], ids=["unknown", "contradicts-its-name", "empty", "bad-method"])
def test_detect_refuses_what_the_upload_path_refuses_with_the_same_error(
        client: Client, shared_stack: Stack, filename: str, data: bytes, query: dict) -> None:
    with shared_stack.redis() as r:
        entries = r.xlen(STREAM)
    detected = client.upload(filename, data, path="/v1/detect", **query)
    uploaded = client.upload(filename, data, **query)
    assert detected.status == uploaded.status >= 400
    assert detected.json()["error"]["code"] == uploaded.json()["error"]["code"]
    with shared_stack.redis() as r:
        assert r.xlen(STREAM) == entries  # neither queued a job


def test_detect_needs_a_key_and_queues_nothing(client: Client, shared_stack: Stack) -> None:
    data = by_id("textract-tests/docx/raw_text.docx").path.read_bytes()
    assert Client(shared_stack, key=None).upload("a.docx", data, path="/v1/detect").status == 401
    with shared_stack.redis() as r:
        entries, counters = r.xlen(STREAM), r.hgetall(JOB_COUNTERS)
    assert client.upload("a.docx", data, path="/v1/detect").status == 200
    with shared_stack.redis() as r:
        assert (r.xlen(STREAM), r.hgetall(JOB_COUNTERS)) == (entries, counters)


def test_formats_lists_a_mime_type_for_every_format(client: Client) -> None:
    listed = client.request("GET", "/v1/formats").json()["formats"]
    assert {f["ext"]: f["mime"] for f in listed} == {e: f.mime for e, f in FORMATS.items()}


# --- the result cache ---------------------------------------------------------------------
def test_the_same_bytes_twice_are_served_from_the_cache_without_an_extraction(
        client: Client, shared_stack: Stack) -> None:
    data = unique_pdf()
    sha = hashlib.sha256(data).hexdigest()
    first = client.upload("a.pdf", data, wait=60).json()
    wait_for(lambda: worker_events(shared_stack, "job.done", sha), 10, "the job.done line")
    finished = finished_count(shared_stack)

    reply = client.upload("b.pdf", data)  # no ?wait: a hit is done at once
    second = reply.json()
    assert reply.status == 200 and second["state"] == "done" and second["cached"] is True
    assert first["cached"] is False and second["id"] != first["id"]
    assert second["filename"] == "b.pdf" and second["attempts"] == 0
    assert second["text"] == first["text"] and second["metadata"] == first["metadata"]
    assert client.job(second["id"], pages=1).json()["pages"] == \
        client.job(first["id"], pages=1).json()["pages"]
    text = client.request("GET", f"/v1/jobs/{second['id']}/text")
    assert text.status == 200 and text.text == first["text"]
    # No worker touched it: FINISH never ran, and there is still one job.done line.
    assert finished_count(shared_stack) == finished
    [line] = worker_events(shared_stack, "job.done", sha)
    # The summary names the bytes by hash and says nothing of what they contain.
    assert not {"text", "metadata", "title", "author", "pages"} & set(line)


def test_cache_0_forces_a_fresh_extraction(client: Client, shared_stack: Stack) -> None:
    data = unique_pdf()
    sha = hashlib.sha256(data).hexdigest()
    client.upload("a.pdf", data, wait=60)
    fresh = client.upload("a.pdf", data, wait=60, cache=0).json()
    assert fresh["state"] == "done" and fresh["cached"] is False
    wait_for(lambda: len(worker_events(shared_stack, "job.done", sha)) == 2, 10,
             "two job.done lines")
    assert client.upload("a.pdf", data, cache="maybe").json()["error"]["code"] == "bad_request"


def test_a_failed_job_is_never_served_from_the_cache(client: Client,
                                                     shared_stack: Stack) -> None:
    data = b"%PDF-1.4\n" + uuid.uuid4().hex.encode() + b" broken\n"
    sha = hashlib.sha256(data).hexdigest()
    jobs = [client.upload("x.pdf", data, wait=60).json() for _ in range(2)]
    assert [(j["state"], j["cached"]) for j in jobs] == [("failed", False)] * 2
    assert jobs[0]["error"]["code"] == jobs[1]["error"]["code"] == "corrupt_document"
    wait_for(lambda: len(worker_events(shared_stack, "job.failed", sha)) == 2, 10,
             "two job.failed lines: each upload was extracted")


def test_after_a_delete_the_result_is_served_to_no_one(client: Client,
                                                       shared_stack: Stack) -> None:
    data = unique_pdf(FOUR_PAGES)
    sha = hashlib.sha256(data).hexdigest()
    first = client.upload("a.pdf", data, wait=60).json()
    copy = client.upload("a.pdf", data).json()
    assert copy["cached"] is True
    assert client.request("DELETE", f"/v1/jobs/{copy['id']}").status == 204

    again = client.upload("a.pdf", data, wait=60).json()
    assert again["cached"] is False and again["text"] == first["text"]
    wait_for(lambda: len(worker_events(shared_stack, "job.done", sha)) == 2, 10,
             "the second extraction's job.done")
    # Deleting the job the cache names (the fresh one now) takes the entry too; the first
    # job keeps its own result.
    assert client.request("DELETE", f"/v1/jobs/{again['id']}").status == 204
    assert client.upload("a.pdf", data, wait=60).json()["cached"] is False
    assert client.job(first["id"]).json()["text"] == first["text"]


def test_cache_hits_and_misses_are_counted_in_metrics(client: Client) -> None:
    def cache() -> dict:
        return client.request("GET", "/metrics").json()["jobs"]["cache"]

    before = cache()
    data = unique_pdf()
    client.upload("a.pdf", data, wait=60)
    client.upload("a.pdf", data)
    client.upload("a.pdf", data, wait=60, cache=0)  # not looked up: neither
    after = cache()
    assert after == {"hits": before["hits"] + 1, "misses": before["misses"] + 1}
    text = client.request("GET", "/metrics", query={"format": "prometheus"}).text
    assert f"textractd_result_cache_hits_total {after['hits']}.0" in text


# --- the cache's scope, decided in Redis (no stack needed) ----------------------------------
@pytest.fixture
def stores(redis_server) -> Iterator[tuple[JobStore, redis.Redis]]:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    ensure_group(client)
    yield JobStore(client, Settings()), client
    client.close()


def _submit(url: str, settings: Settings, tenant: str, data: bytes) -> tuple[str, bool]:
    """Submit `data` as `tenant` the way the api does; (job id, served from the cache)."""
    async def run() -> tuple[str, bool]:
        client = redis.asyncio.Redis.from_url(url)
        try:
            record = {"id": uuid.uuid4().hex, "state": "queued", "attempts": "0",
                      "ext": "txt", "family": "python", "method": "", "tenant": tenant}
            record.update(await cache_fields(record, data, settings))
            submitted = await AsyncJobStore(client, settings).submit(record, data,
                                                                     use_cache=True)
            return submitted.job_id, submitted.cached
        finally:
            await client.aclose()

    return asyncio.run(run())


def _extract_one(store: JobStore) -> None:
    delivery, begun = store.take("w-0")
    assert begun.verdict == "run"
    store.finish(delivery, {"state": JobState.DONE, "text": "words", "chars": 5,
                            "metadata": "{}", "page_ends": "null"})


@pytest.mark.parametrize("shared", [False, True], ids=["per-tenant", "shared"])
def test_the_cache_serves_only_its_own_tenant_unless_shared(redis_server, stores,
                                                            shared: bool) -> None:
    store, client = stores
    settings = Settings(result_cache_shared=shared)
    data = uuid.uuid4().bytes
    assert _submit(redis_server.url, settings, "acme", data)[1] is False
    _extract_one(store)
    own_id, own_hit = _submit(redis_server.url, settings, "acme", data)
    other_id, other_hit = _submit(redis_server.url, settings, "globex", data)
    assert own_hit is True
    assert other_hit is shared
    assert client.hget(job_key(other_id), "state") == (b"done" if shared else b"queued")
    assert client.hget(job_key(own_id), "tenant") == b"acme"
