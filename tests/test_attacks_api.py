"""Attacks on the api's front door by a client holding a valid key (issue 13, api part).

Each test attacks a running stack over real sockets the way the report did, and checks
what the attacker gets and what every other client keeps: no version banner, no second
request smuggled on an HTTP/1.0 connection, no false Redis alarm from a client that hangs
up, and uploads of one key that cannot stall another key's.
"""

from __future__ import annotations

import re
import shutil
import socket
import time
from collections.abc import Iterator

import pytest

from devtools.stack import Stack, wait_for
from tests.client import Client
from tests.test_hostile import raw_request, request_head

pytestmark = pytest.mark.slow

FOX = b"the quick brown fox jumps over the lazy dog"
STATUS_LINE = re.compile(rb"HTTP/1\.[01] \d{3} ")


@pytest.fixture(scope="module")
def front() -> Iterator[Stack]:
    """The api alone (no workers): these attacks never reach a worker."""
    stack = Stack(workers=False).start()
    yield stack
    stack.stop()
    shutil.rmtree(stack.root, ignore_errors=True)


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or `timeout` passes (False)."""
    sock.settimeout(timeout)
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            return received, True
        if not chunk:
            return received, True
        received += chunk
    return received, False


# --- 13.6: no version banner ------------------------------------------------------------------
def test_no_answer_names_python_or_aiohttp_or_their_versions(front: Stack) -> None:
    client = Client(front)
    answers = {
        "a success": client.request("GET", "/v1/formats"),
        "an open route": Client(front, key=None).request("GET", "/health"),
        "an api error": Client(front, key="wrong").request("GET", "/v1/formats"),
        "an unknown route": client.request("GET", "/no/such/route"),
        # Answered by aiohttp's own parser, before any middleware runs.
        "a parser error": raw_request(front.port, b"GET / HTTP/1.1\r\nHost: x\r\n"
                                                  b"Bad Header\r\n\r\n"),
    }
    for what, reply in answers.items():
        assert reply.headers.get("server") == "textractd", (what, reply.headers)
        head = " ".join(f"{k}: {v}" for k, v in reply.headers.items()).lower()
        assert "python" not in head and "aiohttp" not in head, (what, head)
    assert answers["a parser error"].status == 400


# --- 13.5: HTTP/1.0 with Transfer-Encoding: chunked ------------------------------------------
@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "plain"])
def test_an_http_1_0_chunked_request_gets_400_and_the_connection_closes(
        front: Stack, keep_alive: bool) -> None:
    key = front.api_key
    first = (f"POST /v1/jobs?filename=a.txt HTTP/1.0\r\nHost: x\r\nX-API-Key: {key}\r\n"
             + ("Connection: keep-alive\r\n" if keep_alive else "")
             + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").encode()
    second = request_head("GET", "/v1/formats", key)
    with socket.create_connection(("127.0.0.1", front.port)) as sock:
        sock.sendall(first + second)
        received, closed = read_until_closed(sock, timeout=5)
    assert closed, f"the connection stayed open after {received[:300]!r}"
    assert received.startswith(b"HTTP/1.0 400 ") or received.startswith(b"HTTP/1.1 400 "), \
        received[:300]
    # One answer only: the request smuggled after the faulty one was never run.
    assert len(STATUS_LINE.findall(received)) == 1, received
    head, _, body = received.partition(b"\r\n\r\n")
    if keep_alive:  # the api's own answer
        assert b"application/json" in head and b'"bad_request"' in body, received
    # else aiohttp's parser refuses it first, in text/plain (BUG_PROTOCOL_PLAIN_TEXT in
    # tests/test_hostile.py): bytes after a request that ends its connection.
    with front.redis() as r:
        assert not list(r.scan_iter("textractd:job:*")), "the faulty request made a job"


def test_an_http_1_0_request_without_transfer_encoding_is_still_served(front: Stack) -> None:
    head = (f"GET /v1/formats HTTP/1.0\r\nHost: x\r\nX-API-Key: {front.api_key}\r\n\r\n"
            ).encode()
    reply = raw_request(front.port, head)
    assert reply.status == 200 and b'"formats"' in reply.body


# --- 13.7: a client that hangs up mid-upload ---------------------------------------------------
def posts_by_status(stack: Stack) -> dict[int, int]:
    metrics = Client(stack).request("GET", "/metrics").json()
    return {r["status"]: r["count"] for r in metrics["requests"]
            if r["route"] == "/v1/jobs" and r["method"] == "POST"}


def test_a_client_hanging_up_mid_upload_is_no_redis_alarm_and_no_503(front: Stack) -> None:
    before = posts_by_status(front)
    with socket.create_connection(("127.0.0.1", front.port)) as sock:
        sock.sendall(request_head("POST", "/v1/jobs?filename=half.txt", front.api_key,
                                  Content_Length=100_000, X_Request_ID="hangs-up-halfway")
                     + b"a" * 50_000)
        time.sleep(0.3)  # the api is now reading the body: the hang-up is what is tested

    def its_line() -> dict | None:
        return next((e for e in front.log_events("api") if e.get("event") == "http.request"
                     and e.get("request_id") == "hangs-up-halfway"), None)

    line = wait_for(its_line, 10, "the api's line for the request")
    assert line["status"] == 499, line
    events = [e for e in front.log_events("api") if e.get("request_id") == "hangs-up-halfway"]
    assert [e["event"] for e in events] == ["http.client_disconnected", "http.request"], events
    assert events[0]["level"] == "info"
    assert not [e for e in front.log_events("api") if e.get("event") == "redis.unavailable"]

    def counted() -> dict[int, int] | None:
        after = posts_by_status(front)
        return after if after.get(499, 0) > before.get(499, 0) else None

    after = wait_for(counted, 10, "/metrics to count the hang-up")
    assert after.get(503, 0) == before.get(503, 0), after
    # The api is unharmed: the next upload is taken.
    assert Client(front).upload("fox.txt", FOX).status == 202
