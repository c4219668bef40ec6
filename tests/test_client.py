"""daemon.client against running stacks: every method, sync and async, its exceptions,
its retries on 503 as Retry-After says, and an upload streamed rather than held."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.client import (
    AsyncClient,
    AuthenticationFailed,
    BadRequest,
    Client,
    ClientError,
    DocumentRejected,
    JobFailed,
    JobNotFinished,
    NotFound,
    RateLimited,
    RetryNotice,
    ServiceBusy,
    family_of,
    resolve_target,
)
from daemon.config import ROOT
from daemon.errors import ERROR_CODES
from daemon.store import FINAL_STATES
from devtools.corpus import CORPUS
from devtools.stack import Stack

PDF = CORPUS / "textract-tests" / "pdf" / "raw_text.pdf"
DOCX = CORPUS / "textract-tests" / "docx" / "raw_text.docx"
CORRUPT_PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> this is not a pdf body\n"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    stack = Stack(env={"WORKER_PROCESSES": "2", "RESULT_TTL": "600"}).start()
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


@pytest.fixture(scope="module")
def idle_stack() -> Iterator[Stack]:
    """No workers and room for one job: the second upload is refused with 503."""
    stack = Stack(env={"MAX_QUEUE_DEPTH": "1"}, workers=False).start()
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


def client_for(stack: Stack, **options: object) -> Client:
    return Client(stack.url, stack.api_key, **options)  # type: ignore[arg-type]


# --- the methods ------------------------------------------------------------------------
def test_the_sync_client_submits_waits_reads_and_deletes_a_job(stack: Stack) -> None:
    with client_for(stack) as client:
        queued = client.submit(PDF)
        assert queued["state"] in ("queued", "processing", "done")
        assert (queued["filename"], queued["bytes"]) == ("raw_text.pdf", PDF.stat().st_size)
        done = client.wait(queued["id"], timeout=60)
        assert done["state"] == "done" and done["chars"] == len(done["text"]) > 1000
        assert client.job(queued["id"])["state"] == "done"
        assert client.text(queued["id"]) == done["text"]
        assert client.extract(PDF) == done["text"]
        with open(DOCX, "rb") as f:  # an open file: its name is the upload's name
            job = client.extract_job(f)
        assert (job["filename"], job["format"], job["state"]) == ("raw_text.docx", "docx",
                                                                  "done")
        client.delete(queued["id"])
        with pytest.raises(NotFound) as raised:
            client.job(queued["id"])
        assert (raised.value.code, raised.value.status) == ("not_found", 404)


async def test_the_async_client_submits_waits_reads_and_deletes_a_job(stack: Stack) -> None:
    async with AsyncClient(stack.url, stack.api_key) as client:
        queued = await client.submit(PDF, method="pdfminer")
        assert queued["method"] == "pdfminer"
        done = await client.wait(queued["id"], timeout=60)
        assert done["state"] == "done" and len(done["text"]) > 1000
        assert (await client.job(queued["id"]))["state"] == "done"
        assert await client.text(queued["id"]) == done["text"]
        assert await client.extract(b"async, in memory", filename="note.txt") == \
            "async, in memory"
        await client.delete(queued["id"])
        with pytest.raises(NotFound):
            await client.text(queued["id"])


def test_submit_many_answers_in_order_with_a_refused_document_in_its_place(
        stack: Stack) -> None:
    sources = [b"first", b"\x00\x01\x02 not a format", b"third"]
    with client_for(stack) as client:
        answers = client.submit_many(sources, filename="x.txt", concurrency=3)
        assert isinstance(answers[1], DocumentRejected)
        assert answers[1].code == "unsupported_media_type"
        texts = [client.wait(a["id"], timeout=60)["text"] for a in (answers[0], answers[2])]
    assert texts == ["first", "third"]


async def test_the_async_submit_many_answers_in_order(stack: Stack) -> None:
    async with AsyncClient(stack.url, stack.api_key) as client:
        answers = await client.submit_many([f"doc {n}".encode() for n in range(6)],
                                           filename="n.txt", wait=30, concurrency=3)
    assert [a["text"] for a in answers] == [f"doc {n}" for n in range(6)]  # type: ignore[index]


# --- exceptions -------------------------------------------------------------------------
def test_every_error_code_of_the_service_has_a_family_narrower_than_the_root() -> None:
    for code, known in ERROR_CODES.items():
        family = family_of(code, known.status)
        assert issubclass(family, ClientError) and family is not ClientError, code
    assert family_of("queue_full") is ServiceBusy and family_of("corrupt_document") is JobFailed
    # The client's idea of "final" is the service's.
    from daemon.client.base import FINAL_STATES as CLIENT_FINAL
    assert {str(s) for s in FINAL_STATES} == CLIENT_FINAL


def test_each_refusal_is_raised_as_its_family_with_the_services_code(stack: Stack) -> None:
    with Client(stack.url, api_key="") as anonymous, pytest.raises(AuthenticationFailed) as e:
        anonymous.submit(b"x", filename="a.txt")
    assert (e.value.code, e.value.status) == ("unauthorized", 401)
    with Client(stack.url, api_key="not-a-key") as wrong, pytest.raises(AuthenticationFailed):
        wrong.submit(b"x", filename="a.txt")
    with client_for(stack) as client:
        with pytest.raises(BadRequest) as e:
            client.submit(PDF, method="sphinx")
        assert e.value.code == "invalid_method" and e.value.request_id
        with pytest.raises(DocumentRejected) as e:
            client.submit(b"\x00\x01\x02\x03", filename="blob.bin")
        assert e.value.code == "unsupported_media_type"
        with pytest.raises(JobFailed) as e:
            client.extract(CORRUPT_PDF, filename="broken.pdf")
        assert e.value.code == "corrupt_document" and e.value.job["state"] == "failed"
        with pytest.raises(NotFound):
            client.delete("0" * 32)


def test_the_text_of_a_job_not_finished_is_job_not_finished(idle_stack: Stack) -> None:
    with client_for(idle_stack) as client:
        job = client.submit(b"waiting", filename="w.txt")
        try:
            with pytest.raises(JobNotFinished) as e:
                client.text(job["id"])
            assert e.value.status == 409 and e.value.retry_after == 1
            with pytest.raises(TimeoutError):
                client.wait(job["id"], timeout=0.5)
        finally:
            client.delete(job["id"])


# --- retries ----------------------------------------------------------------------------
def test_a_503_is_retried_after_retry_after_then_raised_when_the_retries_run_out(
        idle_stack: Stack) -> None:
    notices: list[RetryNotice] = []
    with client_for(idle_stack, retries=2, max_backoff=0.2, on_retry=notices.append) as client:
        first = client.submit(b"fills the queue", filename="a.txt")
        try:
            with pytest.raises(ServiceBusy) as e:
                client.submit(b"one too many", filename="b.txt")
        finally:
            client.delete(first["id"])
    assert (e.value.code, e.value.status) == ("queue_full", 503)
    assert [n.attempt for n in notices] == [1, 2]
    # The service said how long (no drain rate known yet: 30 s); the cap shortened it.
    assert all(n.retry_after == 30 and n.code == "queue_full" for n in notices)
    assert all(0.2 <= n.delay <= 0.22 for n in notices)


async def test_an_upload_refused_with_503_goes_through_once_the_queue_has_room(
        idle_stack: Stack) -> None:
    """The queue frees up while the client waits (the job ahead is deleted by another
    caller): the same upload, streamed from its path again, is accepted."""
    with client_for(idle_stack) as other:
        ahead = other.submit(b"ahead", filename="a.txt")
        notices: list[RetryNotice] = []

        def make_room(notice: RetryNotice) -> None:
            notices.append(notice)
            threading.Thread(target=other.delete, args=(ahead["id"],)).start()

        async with AsyncClient(idle_stack.url, idle_stack.api_key, retries=None,
                               max_backoff=0.5, on_retry=make_room) as client:
            job = await client.submit(PDF)
        assert [n.status for n in notices] == [503]
        assert (job["filename"], job["bytes"]) == ("raw_text.pdf", PDF.stat().st_size)
        other.delete(job["id"])


def test_a_429_is_retried_after_retry_after_and_raised_as_rate_limited(
        make_stack) -> None:
    limited = make_stack(env={"RATE_LIMIT_PER_MINUTE": "2"}, workers=False)
    notices: list[RetryNotice] = []
    with client_for(limited, retries=1, max_backoff=0.1, on_retry=notices.append) as client:
        client.submit(b"one", filename="1.txt")
        client.submit(b"two", filename="2.txt")
        with pytest.raises(RateLimited) as e:
            client.submit(b"three", filename="3.txt")
    assert (e.value.code, e.value.status) == ("rate_limited", 429)
    assert isinstance(e.value, ServiceBusy)
    # Until the minute turns, as the service said; the cap kept the test short.
    assert [n.status for n in notices] == [429]
    assert 1 <= notices[0].retry_after <= 61 and notices[0].delay <= 0.11


def test_no_other_refusal_is_retried(stack: Stack) -> None:
    notices: list[RetryNotice] = []
    with client_for(stack, on_retry=notices.append) as client:
        for call in (lambda: client.job("f" * 32),
                     lambda: client.submit(b"\x00\x01", filename="x.bin")):
            with pytest.raises(ClientError):
                call()
    assert notices == []


# --- streaming --------------------------------------------------------------------------
STREAM_SCRIPT = """
import asyncio, json, resource, sys
from daemon.client import AsyncClient, Client

url, key, path, mode = sys.argv[1:]
source = open(path, "rb").read() if mode.endswith("bytes") else path  # held by the caller
def peak_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

if mode.startswith("sync"):
    with Client(url, key) as client:
        client.delete(client.submit(b"warm up", filename="w.txt")["id"])
        before = peak_kb()
        job = client.submit(source, filename="big.txt")
        client.delete(job["id"])
else:
    async def main():
        async with AsyncClient(url, key) as client:
            await client.delete((await client.submit(b"warm up", filename="w.txt"))["id"])
            global before
            before = peak_kb()
            job = await client.submit(source, filename="big.txt")
            await client.delete(job["id"])
            return job
    job = asyncio.run(main())
print(json.dumps({"growth_kb": peak_kb() - before, "bytes": job["bytes"]}))
"""


@pytest.mark.parametrize("mode", ["sync path", "async path", "sync bytes", "async bytes"])
def test_a_16_mb_upload_is_streamed_not_held_in_the_clients_memory(
        stack: Stack, tmp_path: Path, mode: str) -> None:
    big = tmp_path / "big.txt"
    size = 16 * 1024 * 1024
    with open(big, "wb") as f:
        line = b"sixteen megabytes of plain text, streamed in chunks by the client\n"
        f.write((line * (size // len(line) + 1))[:size])
    done = subprocess.run([sys.executable, "-c", STREAM_SCRIPT, stack.url, stack.api_key,
                           str(big), mode], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    growth = figures["growth_kb"] * 1024
    print(f"{mode} client: peak RSS grew {growth / 1024:.0f} KiB uploading "
          f"{size / 1e6:.1f} MB ({growth / size:.1%} of the file)")
    assert figures["bytes"] == size
    # A path is never held whole; bytes are held by the caller and the client adds no
    # copy of them. (Held once more would be 1x; "not copied twice" is < 2x.)
    assert growth < size / 4


# --- where it connects by default -------------------------------------------------------
def test_the_target_is_the_arguments_then_the_environment_then_the_local_env_file(
        tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HOST=0.0.0.0\nPORT=5123\nAPI_KEY=acme:first-key,second\n")
    local = {"TEXTRACTD_HOME": str(tmp_path)}
    assert resolve_target(environ=local) == ("http://127.0.0.1:5123", "first-key")
    assert resolve_target(environ={**local, "TEXTRACTD_URL": "http://h:1/",
                                   "TEXTRACTD_API_KEY": "env-key"}) == ("http://h:1", "env-key")
    assert resolve_target("http://given:2", "given-key", environ=local) == (
        "http://given:2", "given-key")
    assert resolve_target(environ={"TEXTRACTD_HOME": str(tmp_path / "none")}) == (
        "http://127.0.0.1:5001", None)


# --- the README's example ---------------------------------------------------------------
def readme_client_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Python client"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_the_readme_client_example_runs_as_written(stack: Stack, tmp_path: Path) -> None:
    code = readme_client_example()
    assert len(code.strip().splitlines()) == 5, code
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "TEXTRACTD_URL": stack.url,
                               "TEXTRACTD_API_KEY": stack.api_key})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, textractd!\n"
