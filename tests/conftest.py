"""Shared fixtures: real redis-servers and whole stacks in temporary folders, the corpus."""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import textract

from daemon import lua
from daemon.config import Settings
from daemon.store import (
    DEPTH,
    JOB_COUNTERS,
    QUARANTINE,
    STREAM,
    JobStore,
    ensure_group,
    job_key,
    payload_key,
    text_key,
)
from devtools.corpus import CORPUS, CorpusDoc, corpus_documents  # noqa: F401 - tests import these here
from devtools.redis_server import RedisServer, throwaway_redis
from devtools.stack import Stack

# tesseract's OpenMP threads, in the tests' own calls to textract: on this shared 2-core
# machine they make the corpus scan's OCR take 15 s instead of 2 s (the stacks' workers
# run with OMP_THREAD_LIMIT=1 for the same reason). The text is the same either way.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")


@functools.cache
def textract_text(doc_id: str, method: str | None = None) -> str:
    """textract's own text of a corpus document, read once per test session: several
    modules compare against it, and the scan's OCR costs seconds."""
    doc = next(d for d in corpus_documents() if d.id == doc_id)
    kwargs = {**doc.kwargs, **({"method": method} if method else {})}
    return textract.process(str(doc.path), **kwargs).decode("utf-8", "replace")


def fails_as_textract_fails(path: Path, ext: str) -> None:
    """Asserts that textract.process fails on `path` and that the worker's extraction
    fails too, as a CorruptDocument naming textract's exception."""
    from daemon.documents.extract import extract
    from daemon.errors import CorruptDocument

    with pytest.raises(Exception) as textracts:
        textract.process(str(path))
    with pytest.raises(CorruptDocument) as ours:
        extract(path, ext)
    assert type(textracts.value).__name__ in str(ours.value)


def manifest_params() -> list:
    """(document path under the corpus, format, declared extension) per document."""
    return [pytest.param(d.id, d.format, d.kwargs.get("extension"), id=d.id)
            for d in corpus_documents()]


def squash(text: str) -> str:
    """Whitespace-insensitive form, as upstream textract's tests compare."""
    return "".join(text.split())


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with throwaway_redis() as server:
        yield server


@pytest.fixture
def tools(tmp_path: Path):  # -> tests.fakes.FakeTools (which imports this module)
    """Fake pdftotext & co. put first on the workers' PATH, in a mode of the test's choosing."""
    from tests.fakes import FakeTools

    return FakeTools(tmp_path / "fake-tools")


@pytest.fixture
def store(redis_server) -> Iterator[JobStore]:
    """The workers' JobStore on a throwaway redis-server, with a fast breaker recovery."""
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    ensure_group(client)
    settings = dataclasses.replace(Settings(), max_attempts=10,
                                   circuit_breaker_recovery_timeout=0.3)
    yield JobStore(client, settings)
    client.close()  # its sockets, before the server goes (no ResourceWarning at exit)


def queue_job(store: JobStore, family: str = "pdf", payload: bytes = b"%PDF-",
              **fields: str) -> str:
    """Queue a job with the api's own SUBMIT script (record `fields` added); returns its
    id."""
    job_id = uuid.uuid4().hex
    record = {"id": job_id, "state": "queued", "attempts": "0", "ext": "pdf",
              "family": family, "method": "", "created_at": str(time.time()), **fields}
    submit_script = store.client.register_script(lua.SUBMIT)
    submit_script(keys=[job_key(job_id), payload_key(job_id), STREAM, DEPTH,
                        text_key(job_id), JOB_COUNTERS, QUARANTINE],
                  args=[0, job_id, payload, family, "", time.time(), 0, "", "",
                        fields.get("sha256", ""),
                        *[x for pair in record.items() for x in pair]])
    return job_id


@pytest.fixture
def make_stack() -> Iterator[Callable[..., Stack]]:
    """Start stacks with settings of the test's choosing; all are discarded afterwards."""
    stacks: list[Stack] = []

    def make(**kwargs: object) -> Stack:
        stack = Stack(**kwargs)
        stacks.append(stack)
        return stack.start()

    yield make
    for stack in stacks:
        stack.discard()
        shutil.rmtree(stack.root, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_stack() -> Iterator[Stack]:
    """One stack for a module's read-mostly tests (the corpus, the API's answers)."""
    stack = Stack(env={"WORKER_PROCESSES": "2", "RESULT_TTL": "600"}).start()
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)
