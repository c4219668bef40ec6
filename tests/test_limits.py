"""Bounded resources: slow bodies, the queue bound, the per-key rate limit, upload memory.

Memory is read from outside the api (psutil on its pid) while real sockets hold uploads
open, so the numbers are what the operating system sees.
"""

from __future__ import annotations

import gzip
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from bench.loadgen import MIB, measure_upload_rss
from daemon.store import DEPTH
from devtools.stack import Stack, wait_for
from tests.client import Client, Reply
from tests.test_hostile import error_of, jobs_added, raw_request, request_head

pytestmark = pytest.mark.slow

FOX = b"the quick brown fox jumps over the lazy dog"
SLOW_KEY = "slow-client-key-0123456789abc"  # the trickles'
OTHER_KEY = "other-client-key-0123456789ab"  # everyone else's


@pytest.fixture(scope="module")
def slow_stack() -> Iterator[Stack]:
    """One worker and a one-second UPLOAD_TIMEOUT: what slow clients may hold."""
    stack = Stack(env={"WORKER_PROCESSES": "1", "UPLOAD_TIMEOUT": "1",
                       "MAX_CONTENT_LENGTH": str(MIB), "JOB_TIMEOUT": "20",
                       "API_KEY": f"slow:{SLOW_KEY},other:{OTHER_KEY}"}).start()
    stack.api_key = SLOW_KEY
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


def in_thread(work: Callable[[], object]) -> Callable[[], object]:
    """Run `work` now in a thread; the returned function joins it and gives its result."""
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # re-raised in the caller
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join() -> object:
        thread.join(120)
        if "error" in result:
            raise result["error"]
        return result["value"]

    return join


def trickle(stack: Stack, chunked: bool = False):
    """An upload whose body comes a few bytes every 0.3 s, for 9 s (unless answered)."""
    head = request_head("POST", "/v1/jobs?filename=slow.txt", stack.api_key,
                        Connection="close",
                        **({"Transfer_Encoding": "chunked"} if chunked
                           else {"Content_Length": 1000}))
    pieces = [b"2\r\nab\r\n" if chunked else b"ab"] * 30
    return raw_request(stack.port, [head, *pieces], pause=0.3, timeout=30)


# --- slow clients ---------------------------------------------------------------------------
def test_a_trickling_body_times_out_with_408_while_a_normal_upload_completes_promptly(
        slow_stack: Stack) -> None:
    slow = in_thread(lambda: trickle(slow_stack))
    started = time.monotonic()
    normal = Client(slow_stack, key=OTHER_KEY).upload("fox.txt", FOX, wait=30)
    normal_seconds = time.monotonic() - started
    reply = slow()
    error_of(reply, 408, "request_timeout")
    assert 0.9 < reply.elapsed < 4, reply.elapsed
    assert normal.status == 200 and normal.json()["state"] == "done"
    assert normal_seconds < 2.0, normal_seconds


def test_many_trickling_bodies_hold_neither_the_worker_nor_other_clients(
        slow_stack: Stack) -> None:
    slow = [in_thread(lambda chunked=chunked: trickle(slow_stack, chunked))
            for chunked in [False, True] * 6]
    client = Client(slow_stack, key=OTHER_KEY)
    started = time.monotonic()
    replies = [client.upload(f"fox{i}.txt", FOX, wait=30) for i in range(3)]
    seconds = time.monotonic() - started
    assert [r.json()["state"] for r in replies] == ["done"] * 3
    assert seconds < 4.0, seconds
    # MAX_UPLOADS_PER_KEY (8) of the twelve are read until they time out; the other four
    # are refused at once: one key's sockets queue behind each other, not behind others'.
    answers = [join() for join in slow]
    assert Counter(r.status for r in answers) == {408: 8, 429: 4}
    for reply in answers:
        error_of(reply, None, "request_timeout" if reply.status == 408 else "rate_limited")
        if reply.status == 429:
            assert reply.first_byte < 0.5 and reply.headers["retry-after"] == "1", reply


# --- the queue bound ------------------------------------------------------------------------
def assert_queue_full(reply: Reply) -> int:
    error_of(reply, 503, "queue_full")
    retry_after = reply.headers["retry-after"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 300, retry_after
    return int(retry_after)


def test_the_upload_past_max_queue_depth_gets_503_queue_full_with_retry_after(
        make_stack) -> None:
    stack = make_stack(workers=False, env={"MAX_QUEUE_DEPTH": "3"})
    client = Client(stack)
    jobs = [client.upload(f"fox{i}.txt", FOX) for i in range(3)]
    assert [r.status for r in jobs] == [202] * 3
    assert_queue_full(client.upload("fourth.txt", FOX))
    assert jobs_added(stack) == 3
    # While it waits, a queued job has no text yet.
    text = client.request("GET", f"/v1/jobs/{jobs[0].json()['id']}/text")
    error_of(text, 409, "job_not_finished")
    # Deleting a waiting job makes room again.
    assert client.request("DELETE", f"/v1/jobs/{jobs[0].json()['id']}").status == 204
    assert client.upload("again.txt", FOX).status == 202
    assert_queue_full(client.upload("fifth.txt", FOX))


def test_400_concurrent_uploads_past_the_queue_bound_get_exactly_the_room_there_is(
        make_stack) -> None:
    # One client with 40 connections, allowed that many uploads at once: only the queue
    # bound is under test here.
    stack = make_stack(workers=False, env={"MAX_QUEUE_DEPTH": "50",
                                           "MAX_UPLOADS_PER_KEY": "40"})
    client = Client(stack, timeout=60)
    with ThreadPoolExecutor(max_workers=40) as pool:
        replies = list(pool.map(lambda i: client.upload(f"doc{i}.txt", FOX), range(400)))
    assert Counter(r.status for r in replies) == {202: 50, 503: 350}
    for reply in replies:
        if reply.status == 503:
            assert_queue_full(reply)
        else:
            assert reply.json()["state"] == "queued"
    assert jobs_added(stack) == 50
    with stack.redis() as r:
        assert int(r.get(DEPTH)) == 50


# --- the rate limit ---------------------------------------------------------------------------
def test_the_request_past_the_per_key_rate_limit_gets_429_with_retry_after(make_stack) -> None:
    stack = make_stack(workers=False, env={"RATE_LIMIT_PER_MINUTE": "5",
                                           "API_KEY": "first-key-abc,second-key-xyz"})
    first, second = Client(stack, key="first-key-abc"), Client(stack, key="second-key-xyz")
    for _attempt in range(3):
        window = int(time.time() // 60)
        replies = [first.request("GET", "/v1/formats") for _ in range(5)]
        replies.append(first.upload("fox.txt", FOX))
        if int(time.time() // 60) == window:
            break  # the six requests fell in one window; otherwise try in the next one
    assert [r.status for r in replies[:5]] == [200] * 5
    error_of(replies[5], 429, "rate_limited")
    assert 1 <= int(replies[5].headers["retry-after"]) <= 61
    # The limit is per key, the open route is not counted, a wrong key is refused first.
    assert second.request("GET", "/v1/formats").status == 200
    assert Client(stack, key=None).request("GET", "/health").status == 200
    error_of(Client(stack, key="wrong").request("GET", "/v1/formats"), 403, "forbidden")
    with stack.redis() as r:
        assert jobs_added(stack) == 0 and not list(r.scan_iter("*first-key-abc*"))


# --- upload memory --------------------------------------------------------------------------
def test_32_concurrent_16_mib_uploads_keep_the_api_below_1_5_times_their_size(
        make_stack) -> None:
    # 32 uploads at once from one key: the operator allows one client that many.
    stack = make_stack(workers=False, env={"MAX_CONTENT_LENGTH": str(16 * MIB),
                                           "MAX_UPLOADS_PER_KEY": "32"})
    result = measure_upload_rss(stack, clients=32, upload_bytes=16 * MIB)
    print(result.summary())  # the README figure (pytest -s shows it)
    assert result.statuses == {202: 32}, result.summary()
    assert result.peak_rss < result.target_bytes, result.summary()


def stalled_uploads(stack: Stack, count: int, encoded: bool) -> int:
    """Hold `count` uploads one step short of done; the api's RSS growth meanwhile."""
    size = 4 * MIB - 4096
    body = gzip.compress(b"a" * size) if encoded else b"a" * size
    head = request_head("POST", "/v1/jobs?filename=held.txt", stack.api_key,
                        Content_Length=len(body),
                        **({"Content_Encoding": "gzip"} if encoded else {}))
    api = psutil.Process(stack.program_pid("api"))
    baseline = api.memory_info().rss
    sockets = [socket.create_connection(("127.0.0.1", stack.port)) for _ in range(count)]

    def send(sock: socket.socket) -> None:
        try:  # blocks once the api stops reading this one: that is the point
            sock.sendall(head + body[:-16])
        except OSError:
            pass  # closed by the test when the measurement is over

    senders = [threading.Thread(target=send, args=(s,), daemon=True) for s in sockets]
    for sender in senders:
        sender.start()
    peak, deadline = baseline, time.monotonic() + 3.0
    while time.monotonic() < deadline:  # a measuring window, not a wait for an event
        peak = max(peak, api.memory_info().rss)
        time.sleep(0.02)
    for sock in sockets:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a sender blocked in sendall; close() would not
        sock.close()
    for sender in senders:
        sender.join(10)
    return peak - baseline


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "gzip"])
def test_stalled_large_uploads_are_held_within_the_upload_memory_budget(make_stack,
                                                                        encoded) -> None:
    stack = make_stack(workers=False, env={"MAX_CONTENT_LENGTH": str(4 * MIB),
                                           "UPLOAD_MEMORY_MB": "8", "UPLOAD_TIMEOUT": "10"})
    growth = stalled_uploads(stack, 24, encoded=encoded)
    print(f"24 stalled {'gzip' if encoded else '4 MiB'} uploads, 8 MiB budget: "
          f"api RSS +{growth / MIB:.0f} MiB")
    # Two bodies fit the budget; the other 22 wait unread (24 held would be ~96 MiB). A
    # compressed body reserves the whole limit: its length says nothing of its cost.
    assert growth < 40 * MIB, f"{growth / MIB:.0f} MiB"


def test_an_upload_declaring_too_much_gets_413_at_once_even_with_the_budget_full(
        make_stack) -> None:
    stack = make_stack(workers=False, env={"MAX_CONTENT_LENGTH": str(MIB),
                                           "UPLOAD_MEMORY_MB": "1", "UPLOAD_TIMEOUT": "10"})

    def head(length: int) -> bytes:
        return request_head("POST", "/v1/jobs?filename=a.txt", stack.api_key,
                            Content_Length=length)

    with socket.create_connection(("127.0.0.1", stack.port)) as holder:
        # Memory is reserved as bytes arrive: this one sends the whole budget, then stalls.
        holder.sendall(head(MIB) + b"a" * (MIB - 16))

        def budget_full() -> bool:
            try:  # a 100 KiB upload now waits for memory: no answer within half a second
                raw_request(stack.port, head(100 * 1024) + b"a" * 100 * 1024, timeout=0.5)
            except TimeoutError:
                return True
            return False

        wait_for(budget_full, 10, "the stalled upload to hold the whole budget")
        reply = raw_request(stack.port, head(2 * MIB), timeout=15)

    error_of(reply, 413, "payload_too_large")
    # Not after UPLOAD_TIMEOUT (10 s) with a 503 server_busy: it never needed the budget.
    assert reply.elapsed < 3, reply.elapsed
