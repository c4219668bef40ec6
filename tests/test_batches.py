"""Several files in one request: POST /v1/batches, one job per `file` part.

Two real stacks: one that runs the jobs (two tenants), and one without workers whose
small limits show what refuses a batch as a whole (nothing runs there, so the queue's
depth stays as the test left it).
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Iterator

import pytest

from daemon.store import DEPTH, QUARANTINE, job_key
from devtools.corpus import CORPUS
from devtools.multipart import multipart_body, multipart_files
from devtools.stack import Stack, wait_for
from tests.client import Client, Reply

pytestmark = pytest.mark.slow

ACME = "acme-key-0123456789abcdefghij"
GLOBEX = "globex-key-0123456789abcdefgh"
DOCX = CORPUS / "textract-tests" / "docx" / "raw_text.docx"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    stack = Stack(env={"API_KEY": f"acme:{ACME},globex:{GLOBEX}", "WORKER_PROCESSES": "2",
                       "BATCH_MAX_FILES": "40", "RESULT_TTL": "600"}).start()
    stack.api_key = ACME
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


@pytest.fixture(scope="module")
def idle() -> Iterator[Stack]:
    """No workers: what is stored stays queued; small bounds to reach."""
    stack = Stack(workers=False, env={"BATCH_MAX_FILES": "32", "MAX_QUEUE_DEPTH": "40",
                                      "MAX_CONTENT_LENGTH": "65536",
                                      "MAX_UPLOADS_PER_KEY": "1"}).start()
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


def post_batch(stack: Stack, files: list[tuple[str, bytes]], key: str | None = None,
               fields: dict[str, str] | None = None, **query: object) -> Reply:
    body, content_type = multipart_files(files, fields)
    return Client(stack, key=key or "default").request(
        "POST", "/v1/batches", body=body, query=query or None,
        headers={"Content-Type": content_type})


def tiny(n: int) -> tuple[str, bytes]:
    return f"note-{n:02}.txt", f"note number {n} says {'ab' * n}\n".encode()


def stored_jobs(stack: Stack) -> int:
    with stack.redis() as r:
        return sum(1 for _ in r.scan_iter(job_key("*")))


def command_calls(stack: Stack) -> dict[str, int]:
    with stack.redis() as r:
        return {name.removeprefix("cmdstat_"): stats["calls"]
                for name, stats in r.info("commandstats").items()}


# --- the batch runs ------------------------------------------------------------------
def test_a_batch_of_32_tiny_files_is_32_jobs_answered_in_request_order_with_their_texts(
        stack: Stack) -> None:
    files = [tiny(n) for n in range(32)]
    reply = post_batch(stack, files, wait=60)
    assert reply.status == 200, reply.body
    body = reply.json()
    assert (body["accepted"], body["refused"]) == (32, 0)
    assert [job["filename"] for job in body["jobs"]] == [name for name, _ in files]
    assert all(job["state"] == "done" for job in body["jobs"])
    assert [job["text"] for job in body["jobs"]] == [data.decode() for _, data in files]
    assert len({job["id"] for job in body["jobs"]}) == 32


def test_a_batch_is_stored_in_one_redis_call(idle: Stack) -> None:
    warm = post_batch(idle, [tiny(0)])  # the first call also loads the script (NOSCRIPT)
    Client(idle).request("DELETE", f"/v1/jobs/{warm.json()['jobs'][0]['id']}")
    before = command_calls(idle)
    reply = post_batch(idle, [tiny(n) for n in range(32)])
    after = command_calls(idle)
    assert reply.status == 202 and reply.json()["accepted"] == 32
    calls = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    # One script call (no workers here to make others), 32 records and entries inside it.
    assert calls.get("evalsha", 0) + calls.get("eval", 0) == 1
    assert calls.get("xadd") == 32 and calls.get("hset") == 32
    for job in reply.json()["jobs"]:
        Client(idle).request("DELETE", f"/v1/jobs/{job['id']}")


def test_a_mixed_batch_accepts_the_good_parts_and_refuses_each_bad_one_on_its_own(
        stack: Stack) -> None:
    files = [tiny(1), ("empty.txt", b""), ("noise.bin", bytes(range(256)) * 8),
             (DOCX.name, DOCX.read_bytes()), tiny(2)]
    reply = post_batch(stack, files, wait=60)
    assert reply.status == 200, reply.body
    body = reply.json()
    jobs = body["jobs"]
    assert (body["accepted"], body["refused"]) == (3, 2)
    assert [job["filename"] for job in jobs] == [name for name, _ in files]
    assert [job["state"] for job in jobs] == ["done", "refused", "refused", "done", "done"]
    assert jobs[1]["id"] is None and jobs[1]["error"]["code"] == "bad_request"
    assert jobs[2]["id"] is None and jobs[2]["error"]["code"] == "unsupported_media_type"
    assert jobs[2]["error"]["status"] == 415
    expected = (CORPUS / "textract-tests" / "docx" / "raw_text.txt").read_text()
    assert "".join(jobs[3]["text"].split()) == "".join(expected.split())
    assert jobs[4]["text"] == files[4][1].decode()


def test_a_batch_without_wait_answers_202_at_once_and_every_job_ends_done(
        stack: Stack) -> None:
    reply = post_batch(stack, [tiny(n) for n in range(5)])
    assert reply.status == 202, reply.body
    jobs = reply.json()["jobs"]
    assert {job["state"] for job in jobs} <= {"queued", "processing", "done"}
    client = Client(stack)
    for job in jobs:
        final = client.job(job["id"], wait=30).json()
        assert final["state"] == "done" and final["filename"] == job["filename"]


def test_every_job_of_a_batch_belongs_to_the_requests_tenant(stack: Stack) -> None:
    reply = post_batch(stack, [tiny(1), tiny(2)], key=GLOBEX, wait=30)
    ids = [job["id"] for job in reply.json()["jobs"]]
    with stack.redis() as r:
        assert [r.hget(job_key(i), "tenant") for i in ids] == [b"globex", b"globex"]
    assert all(Client(stack, key=GLOBEX).job(i).status == 200 for i in ids)
    assert all(Client(stack, key=ACME).job(i).status == 404 for i in ids)


# --- what refuses a request as a whole ----------------------------------------------------
def test_a_second_file_part_on_v1_jobs_is_a_400_naming_the_batch_route_and_stores_nothing(
        idle: Stack) -> None:
    before = stored_jobs(idle)
    body, content_type = multipart_files([tiny(1), tiny(2)])
    reply = Client(idle).request("POST", "/v1/jobs", body=body,
                                 headers={"Content-Type": content_type})
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "bad_request"
    assert "/v1/batches" in reply.json()["error"]["message"]
    assert stored_jobs(idle) == before


def test_one_file_part_on_v1_jobs_is_still_one_job(idle: Stack) -> None:
    body, content_type = multipart_body(*tiny(3))
    reply = Client(idle).request("POST", "/v1/jobs", body=body,
                                 headers={"Content-Type": content_type})
    assert reply.status == 202 and reply.json()["filename"] == "note-03.txt"
    Client(idle).request("DELETE", f"/v1/jobs/{reply.json()['id']}")


def test_a_batch_above_batch_max_files_is_refused_whole(idle: Stack) -> None:
    before = stored_jobs(idle)
    reply = post_batch(idle, [tiny(n) for n in range(33)])
    assert reply.status == 400 and reply.json()["error"]["code"] == "too_many_files"
    assert stored_jobs(idle) == before


def test_a_batch_larger_than_max_content_length_in_all_is_413_even_if_each_part_fits(
        idle: Stack) -> None:
    before = stored_jobs(idle)
    files = [(f"part-{n}.txt", b"x" * 30_000 + b"\n") for n in range(3)]  # 90 KB > 64 KiB
    reply = post_batch(idle, files)
    assert reply.status == 413 and reply.json()["error"]["code"] == "payload_too_large"
    assert stored_jobs(idle) == before


def test_a_batch_the_queue_has_no_room_for_is_refused_whole_with_503(idle: Stack) -> None:
    with idle.redis() as r:
        r.set(DEPTH, 37)  # room for 3 more of MAX_QUEUE_DEPTH=40
    before = stored_jobs(idle)
    reply = post_batch(idle, [tiny(n) for n in range(4)])
    assert reply.status == 503 and reply.json()["error"]["code"] == "queue_full"
    assert "retry-after" in reply.headers
    assert stored_jobs(idle) == before
    fits = post_batch(idle, [tiny(n) for n in range(3)])
    assert fits.status == 202 and fits.json()["accepted"] == 3
    assert stored_jobs(idle) == before + 3
    with idle.redis() as r:
        assert int(r.get(DEPTH)) == 40
        r.set(DEPTH, 0)
    for job in fits.json()["jobs"]:
        Client(idle).request("DELETE", f"/v1/jobs/{job['id']}")


def test_a_callback_url_where_callbacks_are_off_refuses_the_batch_whole(idle: Stack) -> None:
    before = stored_jobs(idle)
    reply = post_batch(idle, [tiny(1), tiny(2)], fields={"callback_url": "https://a.example/"})
    assert reply.status == 400 and reply.json()["error"]["code"] == "callback_not_allowed"
    assert "CALLBACK_ALLOW" in reply.json()["error"]["message"]
    assert stored_jobs(idle) == before


def test_a_batch_waiting_for_its_jobs_holds_no_upload_slot(idle: Stack) -> None:
    """MAX_UPLOADS_PER_KEY=1 here: a client waiting for its results is not uploading."""
    before = stored_jobs(idle)
    waited: list[Reply] = []
    waiting = threading.Thread(target=lambda: waited.append(
        post_batch(idle, [tiny(1), tiny(2)], wait=4)))
    waiting.start()
    wait_for(lambda: stored_jobs(idle) == before + 2, 10, "the waiting batch's jobs")
    meanwhile = post_batch(idle, [tiny(3)])
    waiting.join(30)
    assert meanwhile.status == 202, meanwhile.body
    assert waited[0].status == 202  # no workers here: its wait ran out
    assert [job["state"] for job in waited[0].json()["jobs"]] == ["queued", "queued"]
    with idle.redis() as r:
        r.set(DEPTH, 0)
    for job in waited[0].json()["jobs"] + meanwhile.json()["jobs"]:
        Client(idle).request("DELETE", f"/v1/jobs/{job['id']}")


def test_a_quarantined_document_is_refused_by_the_storing_call_alone_or_in_a_batch(
        idle: Stack) -> None:
    poison = b"bytes that took their worker down"
    sha = hashlib.sha256(poison).hexdigest()
    with idle.redis() as r:
        r.zadd(QUARANTINE, {sha: time.time() + 600})
    try:
        warm = Client(idle).upload("warm.txt", b"warm")  # loads the script (NOSCRIPT)
        Client(idle).request("DELETE", f"/v1/jobs/{warm.json()['id']}")
        jobs_before, before = stored_jobs(idle), command_calls(idle)
        alone = Client(idle).upload("again.txt", poison)
        calls = {name: count - before.get(name, 0)
                 for name, count in command_calls(idle).items()}
        assert alone.status == 422, alone.body
        assert (alone.json()["error"]["code"], alone.json()["error"]["sha256"]) == (
            "poison_document", sha)
        # Refused by the one script call that would have stored it (the ZSCORE counted is
        # the script's own: commandstats counts a script's commands too).
        assert calls.get("evalsha", 0) == 1 and calls.get("zscore", 0) == 1, calls
        assert stored_jobs(idle) == jobs_before

        reply = post_batch(idle, [tiny(1), ("again.txt", poison), tiny(2)])
        assert reply.status == 202, reply.body
        body = reply.json()
        assert (body["accepted"], body["refused"]) == (2, 1)
        assert [job["state"] for job in body["jobs"]] == ["queued", "refused", "queued"]
        assert body["jobs"][1]["id"] is None
        assert body["jobs"][1]["error"]["code"] == "poison_document"
        assert body["jobs"][1]["error"]["status"] == 422
        assert stored_jobs(idle) == jobs_before + 2
        for job in body["jobs"]:
            if job["id"]:
                Client(idle).request("DELETE", f"/v1/jobs/{job['id']}")
    finally:
        with idle.redis() as r:
            r.zrem(QUARANTINE, sha)
    lifted = Client(idle).upload("again.txt", poison)
    assert lifted.status == 202, lifted.body
    Client(idle).request("DELETE", f"/v1/jobs/{lifted.json()['id']}")
