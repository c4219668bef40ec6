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
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from devtools.multipart import multipart_body
from devtools.stack import Stack, wait_for
from tests.client import Client
from tests.test_hostile import RawReply, error_of, raw_request, request_head

pytestmark = pytest.mark.slow

FOX = b"the quick brown fox jumps over the lazy dog"
STATUS_LINE = re.compile(rb"HTTP/1\.[01] \d{3} ")


@pytest.fixture(scope="module")
def front() -> Iterator[Stack]:
    """The api alone (no workers): these attacks never reach a worker."""
    stack = Stack(workers=False).start()
    yield stack
    stack.discard()
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


# --- 13.3: slow uploads of one key stall no one else's ---------------------------------------
ATTACKER = "attacker-key-0123456789abcdef"
VICTIM = "victim-key-0123456789abcdefgh"
MIB = 1024 * 1024
WINDOW = 5.0  # UPLOAD_RATE_WINDOW's default; UPLOAD_MIN_RATE_KB's default is 8


@pytest.fixture(scope="module")
def shared_front() -> Iterator[Stack]:
    """Two tenants on one api with every upload setting at its default (16 MiB uploads,
    a 128 MiB budget, 30 s UPLOAD_TIMEOUT, 8 uploads per key, 8 KiB/s over 5 s)."""
    stack = Stack(workers=False, env={"API_KEY": f"mallory:{ATTACKER},alice:{VICTIM}"}).start()
    stack.api_key = ATTACKER
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


def stalled_upload(stack: Stack) -> RawReply:
    """The report's attack: declare 16 MiB, then send a byte every half second."""
    head = request_head("POST", "/v1/jobs?filename=slow.txt", ATTACKER,
                        Content_Length=16 * MIB, Connection="close")
    return raw_request(stack.port, [head + b"a", *[b"a"] * 60], pause=0.5, timeout=40)


def test_nine_stalled_16_mib_uploads_of_one_key_stall_no_other_keys_upload(
        shared_front: Stack) -> None:
    api = psutil.Process(shared_front.program_pid("api"))
    baseline = api.memory_info().rss
    pool = ThreadPoolExecutor(9)
    attacks = [pool.submit(stalled_upload, shared_front) for _ in range(9)]
    # The ninth is refused at once, so one answer means the other eight hold every slot.
    # (Probing with an upload instead would race them: a probe holding a slot turns one
    # stalled upload away, and the slots are never all held by stalled ones.)
    wait_for(lambda: any(a.done() for a in attacks), 10,
             "the ninth stalled upload to be turned away")
    assert Client(shared_front, key=ATTACKER).upload("probe.txt", FOX).status == 429
    victim = Client(shared_front, key=VICTIM)
    started = time.monotonic()
    small = victim.upload("six.txt", b"sixbyt")
    small_seconds = time.monotonic() - started
    started = time.monotonic()
    large = victim.upload("large.txt", b"a" * (2 * MIB))  # reserved from the budget
    large_seconds = time.monotonic() - started
    answers = [a.result(timeout=60) for a in attacks]
    pool.shutdown()
    growth = api.memory_info().rss - baseline
    print(f"during 8 stalled 16 MiB uploads of another key: a 6-byte upload took "
          f"{small_seconds * 1000:.0f} ms, a 2 MiB one {large_seconds * 1000:.0f} ms; "
          f"stalled uploads ended after {sorted(round(a.elapsed, 1) for a in answers)} s; "
          f"api RSS +{growth / MIB:.0f} MiB")
    assert small.status == 202 and large.status == 202, (small.body, large.body)
    assert small_seconds < 3.0 and large_seconds < 3.0, (small_seconds, large_seconds)
    assert Counter(a.status for a in answers) == {408: 8, 429: 1}
    for answer in answers:
        if answer.status == 429:  # the ninth: refused at once, with a time to come back
            error_of(answer, 429, "rate_limited")
            assert answer.first_byte < 1.0 and int(answer.headers["retry-after"]) >= 1
        else:  # cut when the first window showed the pace, not after UPLOAD_TIMEOUT (30 s)
            assert "slower than" in error_of(answer, 408, "request_timeout")["message"]
            assert WINDOW - 0.5 < answer.elapsed < WINDOW + 3, answer.elapsed
    assert growth < 32 * MIB, f"{growth / MIB:.0f} MiB"


def test_an_upload_that_keeps_its_pace_is_taken_however_slow_its_start(
        shared_front: Stack) -> None:
    # 48 KiB a second for 3 s: above 8 KiB/s, so never cut, though it declares 16 MiB.
    body, content_type = multipart_body("steady.txt", b"a" * (144 * 1024 - 200))
    head = request_head("POST", "/v1/jobs", VICTIM, Content_Length=len(body),
                        Content_Type=content_type, Connection="close")
    pieces = [body[i:i + 24 * 1024] for i in range(0, len(body), 24 * 1024)]
    reply = raw_request(shared_front.port, [head, *pieces], pause=0.5, timeout=30)
    assert reply.status == 202, reply.body
    assert reply.json()["bytes"] == 144 * 1024 - 200
