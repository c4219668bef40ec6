"""The HTTP contract of DESIGN.md, through a real stack."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import textract

from daemon import errors
from daemon.pool.master import DEATH_ERRORS
from daemon.store import STREAM, payload_key
from devtools.stack import Stack, wait_for
from tests.client import Client
from tests.conftest import CORPUS, squash

DOCX = CORPUS / "textract-tests/docx/standardized_text.docx"
PDF = CORPUS / "textract-tests/pdf/standardized_text.pdf"
FOX = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def queued_only() -> Iterator[Stack]:
    """A stack without workers: jobs stay queued, so in-between states can be seen."""
    stack = Stack(workers=False).start()
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


def error_of(reply) -> dict:
    body = reply.json()
    assert set(body) == {"error"}
    assert {"code", "message", "request_id"} <= set(body["error"])
    return body["error"]


def test_health_answers_without_a_key(shared_stack) -> None:
    reply = Client(shared_stack, key=None).request("GET", "/health")
    assert reply.status == 200
    assert reply.json()["status"] == "pass"


@pytest.mark.parametrize("path", ["/v1/formats", "/v1/jobs/0123456789abcdef0123456789abcdef"])
def test_every_other_route_needs_the_key(shared_stack, path: str) -> None:
    missing = Client(shared_stack, key=None).request("GET", path)
    assert missing.status == 401
    assert error_of(missing)["code"] == "unauthorized"
    wrong = Client(shared_stack, key="not-the-key").request("GET", path)
    assert wrong.status == 403
    assert error_of(wrong)["code"] == "forbidden"


def test_a_bearer_token_is_accepted_like_the_api_key_header(shared_stack) -> None:
    client = Client(shared_stack, key=None)
    reply = client.request("GET", "/v1/formats",
                           headers={"Authorization": f"Bearer {shared_stack.api_key}"})
    assert reply.status == 200
    assert "pdf" in {f["ext"] for f in reply.json()["formats"]}


def test_a_multipart_upload_is_queued_with_202_and_a_location(queued_only) -> None:
    reply = Client(queued_only).upload("fox.docx", DOCX.read_bytes())
    assert reply.status == 202
    job = reply.json()
    assert job["state"] == "queued"
    assert reply.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["filename"] == "fox.docx" and job["format"] == "docx"
    assert job["bytes"] == DOCX.stat().st_size


def test_a_raw_body_upload_takes_its_name_from_the_query(shared_stack) -> None:
    reply = Client(shared_stack).upload_raw(PDF.read_bytes(), filename="fox.pdf", wait=60)
    assert reply.status == 200
    job = reply.json()
    assert job["state"] == "done" and job["format"] == "pdf"
    assert squash(FOX) in squash(job["text"])


def test_waiting_on_upload_answers_200_with_the_finished_job(shared_stack) -> None:
    reply = Client(shared_stack).upload("fox.docx", DOCX.read_bytes(), wait=60)
    assert reply.status == 200
    job = reply.json()
    assert job["state"] == "done"
    assert job["text"] == FOX
    assert job["chars"] == len(FOX) and job["attempts"] == 1
    assert job["finished_at"] >= job["started_at"] >= job["created_at"]


def test_a_queued_job_can_be_long_polled_and_read_later(shared_stack) -> None:
    client = Client(shared_stack)
    job_id = client.upload("fox.docx", DOCX.read_bytes()).json()["id"]
    polled = client.job(job_id, wait=60)
    assert polled.status == 200 and polled.json()["state"] == "done"
    text = client.request("GET", f"/v1/jobs/{job_id}/text")
    assert text.status == 200
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text == FOX


def test_extract_returns_the_text_itself_or_json_on_request(shared_stack) -> None:
    client = Client(shared_stack)
    plain = client.upload("fox.docx", DOCX.read_bytes(), path="/v1/extract")
    assert plain.status == 200 and plain.text == FOX
    as_json = client.upload("fox.docx", DOCX.read_bytes(), path="/v1/extract",
                            headers={"Accept": "application/json"})
    assert as_json.status == 200 and as_json.json()["text"] == FOX


def test_extract_answers_202_with_the_job_when_it_does_not_finish_in_time(queued_only) -> None:
    reply = Client(queued_only).upload("fox.docx", DOCX.read_bytes(), path="/v1/extract",
                                       wait=0.3)
    assert reply.status == 202
    assert reply.json()["state"] == "queued"


def test_the_text_of_an_unfinished_job_is_a_409(queued_only) -> None:
    client = Client(queued_only)
    job_id = client.upload("fox.docx", DOCX.read_bytes()).json()["id"]
    reply = client.request("GET", f"/v1/jobs/{job_id}/text")
    assert reply.status == 409
    assert error_of(reply)["code"] == "job_not_finished"


def test_a_wait_on_a_job_that_does_not_finish_returns_its_state_in_time(queued_only) -> None:
    client = Client(queued_only)
    job_id = client.upload("fox.docx", DOCX.read_bytes()).json()["id"]
    reply = client.job(job_id, wait=0.5)
    assert reply.status == 200 and reply.json()["state"] == "queued"
    assert 0.4 < reply.elapsed < 5


def test_a_deleted_job_is_gone_and_its_waiters_are_told(queued_only) -> None:
    client = Client(queued_only)
    job_id = client.upload("fox.docx", DOCX.read_bytes()).json()["id"]
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.job, job_id, wait=30)  # no worker: only DELETE ends it
        wait_for(lambda: waiting.running(), 5, "the waiting request to start")
        assert client.request("DELETE", f"/v1/jobs/{job_id}").status == 204
        waited = waiting.result(timeout=10)
    assert waited.status == 404 and waited.elapsed < 5  # told, not left for its 30 s
    assert client.job(job_id).status == 404
    assert client.request("DELETE", f"/v1/jobs/{job_id}").status == 404
    with queued_only.redis() as r:
        assert not r.exists(payload_key(job_id))


def test_an_unknown_job_is_a_404_in_the_error_shape(shared_stack) -> None:
    reply = Client(shared_stack).job("ffffffffffffffffffffffffffffffff")
    assert reply.status == 404
    assert error_of(reply)["code"] == "not_found"
    assert Client(shared_stack).job("../../etc/passwd").status == 404


def test_an_upload_over_the_limit_is_refused_with_413(make_stack) -> None:
    stack = make_stack(workers=False, env={"MAX_CONTENT_LENGTH": "1000"})
    reply = Client(stack).upload_raw(b"x" * 5000, filename="big.txt")
    assert reply.status == 413
    assert error_of(reply)["code"] == "payload_too_large"
    with stack.redis() as r:
        assert r.xlen(STREAM) == 0


def test_a_method_is_checked_against_what_the_format_supports(shared_stack) -> None:
    client = Client(shared_stack)
    bad = client.upload("fox.docx", DOCX.read_bytes(), method="tesseract")
    assert bad.status == 400
    assert error_of(bad)["code"] == "invalid_method"
    good = client.upload("fox.pdf", PDF.read_bytes(), method="pdfminer", wait=60)
    direct = textract.process(str(PDF), method="pdfminer").decode()
    assert good.status == 200 and good.json()["text"] == direct
    assert good.json()["method"] == "pdfminer"


def test_the_request_id_follows_the_job_into_the_worker_log(shared_stack) -> None:
    reply = Client(shared_stack).upload("fox.docx", DOCX.read_bytes(), wait=60,
                                        headers={"X-Request-ID": "trace-me-123"})
    assert reply.headers["x-request-id"] == "trace-me-123"
    job_id = reply.json()["id"]

    def worker_lines() -> list[dict]:
        return [e for e in shared_stack.log_events("workers") if e.get("job_id") == job_id]

    def summaries() -> list[dict]:
        # The summary is logged just after the result is stored: poll for it.
        return [e for e in worker_lines() if e["event"] in ("job.done", "job.failed")]

    wait_for(summaries, 10, "the job's summary line")
    assert all(e["request_id"] == "trace-me-123" for e in worker_lines())
    assert len(summaries()) == 1
    summary = summaries()[0]
    assert summary["state"] == "done" and summary["chars"] == len(FOX)
    assert summary["bytes"] == DOCX.stat().st_size and summary["duration_ms"] > 0


def test_every_log_line_is_one_json_object_with_the_named_fields(shared_stack) -> None:
    Client(shared_stack).upload("fox.docx", DOCX.read_bytes(), wait=60)
    for program in ("api", "workers"):
        # Whole lines only: one still being written (by supervisord) is judged next time.
        raw = (shared_stack.root / "logs" / f"{program}.log").read_bytes().split(b"\n")[:-1]
        events = [orjson.loads(line) for line in raw if line.startswith(b"{")]
        assert len(events) == len(raw) > 0, f"{program}.log has lines that are not JSON"
        for event in events:
            assert {"timestamp", "level", "event", "process", "pid"} <= set(event), event
            assert event["timestamp"].endswith("Z")


def test_every_error_class_is_in_the_tree_and_carries_a_documented_code() -> None:
    # A class outside TextractdError, or with a code clients cannot look up, would reach
    # the errors middleware (or a job's error.code) as something no program can act on.
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, Exception)]
    assert {"QueueFull", "ReplicationTimeout"} <= {c.__name__ for c in classes}
    for cls in classes:
        assert issubclass(cls, errors.TextractdError), cls
        assert cls.code in errors.ERROR_CODES, cls
    for cls in (errors.QueueFull, errors.ReplicationTimeout):
        assert issubclass(cls, errors.ServiceError), cls
        assert not issubclass(cls, errors.DocumentError | errors.MachineryError), cls
        assert errors.ERROR_CODES[cls.code].status == 503, cls


def test_the_codes_the_master_records_for_a_killed_child_are_documented() -> None:
    # No exception is raised in a child the master killed: the master writes these codes.
    for code, _message in DEATH_ERRORS.values():
        assert errors.ERROR_CODES[code].status == 200, code


def test_the_api_supervisord_runs_serves_status_from_its_own_settings_and_store(
        shared_stack) -> None:
    # `python -m daemon.api` (not a test's own app) wires the monitor: its /status reads
    # the stack's Redis (connected, the stack's workers) with the stack's settings.
    reply = Client(shared_stack).request("GET", "/status")
    assert reply.status == 200, reply.body
    status = reply.json()
    assert status["redis"] == {"connected": True, "error": None}
    assert status["workers"]["expected_here"] == shared_stack.worker_count
    assert status["workers"]["live"] >= 1


def test_a_multipart_nested_in_the_upload_is_a_clear_400_and_stores_nothing(shared_stack) -> None:
    inner = (b"--in\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
             b"\r\nhello\r\n--in--\r\n")
    body = (b"--out\r\nContent-Disposition: form-data; name=\"file\"\r\n"
            b"Content-Type: multipart/mixed; boundary=in\r\n\r\n" + inner + b"\r\n--out--\r\n")
    with shared_stack.redis() as r:
        before = r.xlen(STREAM)
        reply = Client(shared_stack).request(
            "POST", "/v1/jobs", body=body,
            headers={"Content-Type": "multipart/form-data; boundary=out"})
        assert reply.status == 400, reply.body
        assert "nested multipart" in error_of(reply)["message"]
        assert r.xlen(STREAM) == before
