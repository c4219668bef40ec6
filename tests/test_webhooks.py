"""Signed webhooks: a finished job's JSON POSTed to its callback_url, durably, safely.

The receivers are real HTTP servers on 127.0.0.1 (threads of this process), allowed with
CALLBACK_ALLOW=127.0.0.1/32: one that answers 200 and checks the signature with the
README's own snippet, one that is down for a while, one that hangs, one that redirects.
The retry intervals are shortened so the whole story takes seconds. Where-a-callback-
may-go is also tested in-process, against the policy alone.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from daemon.config import ROOT, ConfigError, Settings
from daemon.errors import CallbackRefused, InvalidCallbackUrl
from daemon.pool.callbacks import backoff
from daemon.store import (
    CALLBACKS_DUE,
    CALLBACKS_GIVEN_UP,
    CallbackQueue,
    JobStore,
    callback_key,
    job_key,
)
from daemon.webhooks import CallbackPolicy, parse_url
from devtools.corpus import CORPUS
from devtools.multipart import multipart_files
from devtools.stack import Stack, free_port, wait_for
from tests.client import Client
from tests.conftest import queue_job

pytestmark = pytest.mark.slow

SECRET = "webhook-secret-0123456789"
FOX = b"the quick brown fox jumps over the lazy dog\n"
MAX_ATTEMPTS = 5
DOCX = CORPUS / "textract-tests" / "docx" / "raw_text.docx"


def readme_verify():
    """The receiver's check exactly as README.md shows it."""
    text = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- webhook-receiver:start -->\n```python\n(.*?)```", text, re.S)[1]
    space: dict = {}
    exec(compile(code, "README.md", "exec"), space)  # the README's own snippet
    return space["verify"]


class Receiver:
    """An HTTP server on 127.0.0.1 that records what it is sent, in a mode: `ok` (200),
    `hang` (never answers), `redirect` (302 to `location`)."""

    def __init__(self, mode: str = "ok", port: int | None = None, location: str = "") -> None:
        self.mode, self.location = mode, location
        self.port = port or free_port()
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.connections = 0
        self.release = threading.Event()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?source=textractd"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                receiver.connections += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.mode == "hang":
                    receiver.release.wait(60)
                    return
                receiver.received.append(({k: v for k, v in self.headers.items()}, body))
                if receiver.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", receiver.location)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def jobs(self) -> list[dict]:
        return [orjson.loads(body) for _, body in self.received]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    stack = Stack(env={"WORKER_PROCESSES": "1", "CALLBACK_ALLOW": "127.0.0.1/32",
                       "CALLBACK_SECRET": SECRET, "CALLBACK_RETRY_BASE": "0.3",
                       "CALLBACK_RETRY_MAX": "0.6",
                       "CALLBACK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
                       "CALLBACK_CONNECT_TIMEOUT": "1", "CALLBACK_READ_TIMEOUT": "1",
                       "RESULT_TTL": "600"}).start()
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.stop()


def submit(stack: Stack, callback_url: str, data: bytes = FOX, name: str = "fox.txt") -> dict:
    reply = Client(stack).upload(name, data, callback_url=callback_url, wait=30)
    assert reply.status == 200, reply.body
    return reply.json()


def delivery_of(stack: Stack, job_id: str) -> dict[str, str] | None:
    """The pending delivery of `job_id`, if one is still queued."""
    with stack.redis() as r:
        for member in r.zrange(CALLBACKS_DUE, 0, -1):
            fields = r.hgetall(callback_key(member.decode()))
            if fields.get(b"job_id") == job_id.encode():
                return {k.decode(): v.decode() for k, v in fields.items()}
    return None


def given_up(stack: Stack, job_id: str) -> dict | None:
    with stack.redis() as r:
        for raw in r.lrange(CALLBACKS_GIVEN_UP, 0, -1):
            entry = orjson.loads(raw)
            if entry["job_id"] == job_id:
                return entry
    return None


def lifecycle(stack: Stack, name: str) -> int:
    return sum(e.get("event") == name for e in stack.log_events("workers"))


def events(stack: Stack, name: str, job_id: str) -> list[dict]:
    return [e for e in stack.log_events("workers")
            if e.get("event") == name and e.get("job_id") == job_id]


def logged(stack: Stack, name: str, job_id: str) -> list[dict]:
    """The job's `name` lines, once there is one: the sender logs as it settles a
    delivery in Redis, and supervisord writes the line out after."""
    return wait_for(lambda: events(stack, name, job_id), 10, f"a {name} line")


# --- delivered, signed ----------------------------------------------------------------
def test_a_finished_job_is_posted_once_signed_and_the_readme_snippet_verifies_it(
        stack: Stack, receivers: list[Receiver]) -> None:
    receiver = Receiver().start()
    receivers.append(receiver)
    job = submit(stack, receiver.url)
    wait_for(lambda: receiver.received, 15, "the callback")
    wait_for(lambda: delivery_of(stack, job["id"]) is None, 5, "the delivery to be removed")
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    verify = readme_verify()
    assert verify(SECRET, headers, body)
    assert not verify("another-secret", headers, body)
    assert not verify(SECRET, headers, body + b" ")
    stale = {**headers, "X-Textractd-Timestamp": str(int(headers["X-Textractd-Timestamp"])
                                                      - 3600)}
    assert not verify(SECRET, stale, body)  # an old request played again
    assert abs(int(headers["X-Textractd-Timestamp"]) - time.time()) < 30
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Textractd-Delivery"])
    sent = orjson.loads(body)
    assert (sent["id"], sent["state"], sent["chars"]) == (job["id"], "done", len(FOX))
    assert headers["Content-Type"] == "application/json"


def test_a_failed_job_is_posted_too_with_its_error_code(
        stack: Stack, receivers: list[Receiver]) -> None:
    receiver = Receiver().start()
    receivers.append(receiver)
    half = DOCX.read_bytes()[:len(DOCX.read_bytes()) // 2]  # the zip is cut: corrupt
    job = submit(stack, receiver.url, data=half, name="broken.docx")
    assert job["state"] == "failed"
    wait_for(lambda: receiver.received, 15, "the callback")
    sent = receiver.jobs()[0]
    assert (sent["id"], sent["state"]) == (job["id"], "failed")
    assert sent["error"]["code"] == job["error"]["code"]


def test_every_job_of_a_batch_with_a_callback_form_field_is_posted(
        stack: Stack, receivers: list[Receiver]) -> None:
    receiver = Receiver().start()
    receivers.append(receiver)
    body, content_type = multipart_files([("a.txt", FOX), ("b.txt", FOX + FOX)],
                                         {"callback_url": receiver.url})
    reply = Client(stack).request("POST", "/v1/batches", body=body, query={"wait": 30},
                                  headers={"Content-Type": content_type})
    ids = {job["id"] for job in reply.json()["jobs"]}
    wait_for(lambda: len(receiver.received) >= 2, 15, "both callbacks")
    assert {job["id"] for job in receiver.jobs()} == ids
    assert len({h["X-Textractd-Delivery"] for h, _ in receiver.received}) == 2


# --- retried, given up ----------------------------------------------------------------
def test_a_receiver_down_for_a_while_gets_the_callback_once_when_it_comes_back(
        stack: Stack, receivers: list[Receiver]) -> None:
    receiver = Receiver()  # its port is chosen, nothing listens there yet
    job = submit(stack, receiver.url)
    wait_for(lambda: int((delivery_of(stack, job["id"]) or {}).get("attempts", 0)) >= 2,
             15, "two failed tries")
    assert "Connection refused" in delivery_of(stack, job["id"])["last_error"]
    receivers.append(receiver.start())
    wait_for(lambda: delivery_of(stack, job["id"]) is None, 15, "the delivery to be done")
    assert [sent["id"] for sent in receiver.jobs()] == [job["id"]]
    delivered = logged(stack, "callback.delivered", job["id"])
    assert len(delivered) == 1 and delivered[0]["attempt"] >= 3


def test_a_receiver_that_hangs_is_timed_out_and_retried_while_jobs_keep_running(
        stack: Stack, receivers: list[Receiver]) -> None:
    receiver = Receiver("hang").start()
    receivers.append(receiver)
    job = submit(stack, receiver.url)
    wait_for(lambda: receiver.connections >= 1, 10, "the first try")
    # Meanwhile the pool runs other jobs as fast as ever: the sender is not the master.
    for _ in range(3):
        started = time.monotonic()
        other = Client(stack).upload("other.txt", FOX, wait=10).json()
        assert other["state"] == "done" and time.monotonic() - started < 5
    wait_for(lambda: given_up(stack, job["id"]), 40, "the callback to be given up")
    assert receiver.connections == MAX_ATTEMPTS
    entry = given_up(stack, job["id"])
    assert entry["attempts"] == MAX_ATTEMPTS and "timed out" in entry["error"]
    assert logged(stack, "callback.given_up", job["id"])


def test_a_redirect_is_not_followed_and_counts_as_a_failure(
        stack: Stack, receivers: list[Receiver]) -> None:
    target = Receiver().start()
    redirect = Receiver("redirect", location=target.url).start()
    receivers += [target, redirect]
    job = submit(stack, redirect.url)
    wait_for(lambda: given_up(stack, job["id"]), 20, "the callback to be given up")
    assert len(redirect.received) == MAX_ATTEMPTS
    assert target.received == []
    assert "redirect" in given_up(stack, job["id"])["error"]


def test_a_callback_pending_while_the_workers_program_is_down_is_delivered_after(
        stack: Stack, receivers: list[Receiver]) -> None:
    receiver = Receiver()
    job = submit(stack, receiver.url)
    wait_for(lambda: delivery_of(stack, job["id"]), 10, "the first failed try")
    started = lifecycle(stack, "callbacks.started")
    stack.supervisorctl("stop", "workers")
    assert lifecycle(stack, "callbacks.stopped") >= 1  # the sender stopped with the program
    receivers.append(receiver.start())
    assert receiver.received == []  # nothing sends while the workers program is down
    assert delivery_of(stack, job["id"]) is not None
    stack.supervisorctl("start", "workers")
    wait_for(lambda: receiver.received, 20, "the callback after the restart")
    wait_for(lambda: delivery_of(stack, job["id"]) is None, 5, "the delivery to be done")
    assert [sent["id"] for sent in receiver.jobs()] == [job["id"]]
    assert lifecycle(stack, "callbacks.started") == started + 1  # sent by the new sender


def test_a_callback_pending_across_a_redis_restart_is_delivered_after(
        stack: Stack, receivers: list[Receiver]) -> None:
    receiver = Receiver()
    job = submit(stack, receiver.url)
    wait_for(lambda: int((delivery_of(stack, job["id"]) or {}).get("attempts", 0)) >= 1,
             10, "a failed try")
    stack.supervisorctl("restart", "redis")  # its AOF is all that carries the delivery
    receivers.append(receiver.start())
    wait_for(lambda: receiver.received, 30, "the callback after Redis came back")
    assert [sent["id"] for sent in receiver.jobs()] == [job["id"]]


def test_a_sender_killed_mid_send_leaves_the_callback_to_the_next_one(
        stack: Stack, receivers: list[Receiver]) -> None:
    receiver = Receiver("hang").start()
    receivers.append(receiver)
    job = submit(stack, receiver.url)
    wait_for(lambda: receiver.connections >= 1, 10, "the first try")
    # supervisord writes the sender's start line a moment after the sender has logged it.
    sender = wait_for(lambda: [e["pid"] for e in stack.log_events("workers")
                               if e.get("event") == "callbacks.started"], 10,
                      "the sender's start line")[-1]
    receiver.mode = "ok"  # the next try is answered
    os.kill(sender, signal.SIGKILL)
    # The master starts another sender; the delivery is due again once its lease ends.
    wait_for(lambda: receiver.received, 30, "the callback from the next sender")
    wait_for(lambda: delivery_of(stack, job["id"]) is None, 5, "the delivery to be done")
    assert [sent["id"] for sent in receiver.jobs()] == [job["id"]]
    (delivered,) = logged(stack, "callback.delivered", job["id"])
    assert delivered["pid"] != sender


# --- refused at submit ----------------------------------------------------------------
@pytest.mark.parametrize(("url", "code"), [
    ("http://127.0.0.2:9/hook", "callback_not_allowed"),  # loopback, not the listed one
    ("http://10.1.2.3/hook", "callback_not_allowed"),  # private
    ("http://169.254.169.254/latest/meta-data", "callback_not_allowed"),  # link-local
    ("http://[::1]:9/hook", "callback_not_allowed"),
    ("http://example.invalid/hook", "callback_not_allowed"),  # a name not listed
    ("ftp://127.0.0.1/hook", "invalid_callback_url"),
    ("http://user:pw@127.0.0.1/hook", "invalid_callback_url"),
    ("/relative/hook", "invalid_callback_url"),
])
def test_a_disallowed_callback_url_is_refused_at_submit_and_stores_nothing(
        stack: Stack, url: str, code: str) -> None:
    with stack.redis() as r:
        before = sum(1 for _ in r.scan_iter(job_key("*")))
    reply = Client(stack).upload("fox.txt", FOX, callback_url=url)
    assert reply.status == 400 and reply.json()["error"]["code"] == code, reply.body
    body, content_type = multipart_files([("fox.txt", FOX)], {"callback_url": url})
    as_field = Client(stack).request("POST", "/v1/jobs", body=body,
                                     headers={"Content-Type": content_type})
    assert as_field.status == 400 and as_field.json()["error"]["code"] == code
    with stack.redis() as r:
        assert sum(1 for _ in r.scan_iter(job_key("*"))) == before


# --- the policy alone -----------------------------------------------------------------
def addresses(*texts: str) -> list:
    return [ipaddress.ip_address(t) for t in texts]


def test_callbacks_are_off_without_callback_allow() -> None:
    with pytest.raises(CallbackRefused, match="off"):
        CallbackPolicy.parse(()).check_target(parse_url("https://hooks.example.com/x"))


def test_a_listed_name_may_reach_public_addresses_but_not_private_ones() -> None:
    policy = CallbackPolicy.parse(("hooks.example.com", "*.example.org"))
    for host in ("hooks.example.com", "a.b.example.org"):
        policy.check_target(parse_url(f"https://{host}/x"))
        policy.check_addresses(host, addresses("93.184.215.14"))
        for private in ("127.0.0.1", "10.0.0.5", "192.168.1.1", "169.254.169.254",
                        "::1", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0"):
            with pytest.raises(CallbackRefused):
                policy.check_addresses(host, addresses(private))
    with pytest.raises(CallbackRefused):
        policy.check_target(parse_url("https://evil.example.net/x"))
    with pytest.raises(CallbackRefused):  # one bad address among good ones is enough
        policy.check_addresses("hooks.example.com", addresses("93.184.215.14", "10.0.0.1"))


def test_a_listed_network_allows_its_private_addresses_and_no_others() -> None:
    policy = CallbackPolicy.parse(("10.20.0.0/16",))
    policy.check_target(parse_url("http://10.20.3.4:8080/x"))
    policy.check_addresses("internal.corp", addresses("10.20.9.9"))
    for other in ("10.21.0.1", "93.184.215.14"):
        with pytest.raises(CallbackRefused):
            policy.check_addresses("internal.corp", addresses(other))


def test_only_absolute_http_urls_without_credentials_are_callback_urls() -> None:
    assert parse_url("https://h.example.com/a?b=c") == ("https", "h.example.com", 443, "/a?b=c")
    assert parse_url("http://127.0.0.1:81") == ("http", "127.0.0.1", 81, "/")
    for bad in ("", "javascript:alert(1)", "http:///x", "http://a b/", "http://h:99999/",
                "https://u@h.example.com/", "http://h/" + "x" * 2100):
        with pytest.raises(InvalidCallbackUrl):
            parse_url(bad)


def test_callback_allow_without_a_secret_or_with_a_bad_network_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="CALLBACK_SECRET"):
        Settings.from_env({"CALLBACK_ALLOW": "127.0.0.1/32", "API_KEY": "k" * 20})
    with pytest.raises(ConfigError, match="CALLBACK_ALLOW"):
        Settings.from_env({"CALLBACK_ALLOW": "10.0.0.0/33", "CALLBACK_SECRET": "s",
                           "API_KEY": "k" * 20})


def test_the_default_retries_span_more_than_an_hour_and_back_off_exponentially() -> None:
    settings = Settings()
    waits = [backoff(settings, attempt) for attempt in range(1, settings.callback_max_attempts)]
    assert sum(waits) >= 3600
    for attempt, wait in enumerate(waits[:5]):  # doubling from CALLBACK_RETRY_BASE (+ jitter)
        assert 10 * 2 ** attempt <= wait <= 11 * 2 ** attempt
    assert max(waits) <= settings.callback_retry_max * 1.1


# --- the queue's steps, in-process against a throwaway redis-server ----------------------
def queue_with_callback(store: JobStore, url: str | None) -> str:
    job_id = queue_job(store)
    if url:
        store.client.hset(job_key(job_id), "callback_url", url)
    return job_id


def finish_done(store: JobStore, job_id: str) -> bool:
    delivery, begun = store.take("c-0")
    assert delivery.job_id == job_id and begun.verdict == "run"
    return store.finish(delivery, {"state": "done", "chars": 3, "text": "abc"}).written


def test_finish_queues_one_delivery_for_a_job_that_asked_and_none_for_one_that_did_not(
        store: JobStore) -> None:
    asked = queue_with_callback(store, "http://127.0.0.1:9/hook")
    silent = queue_with_callback(store, None)
    assert finish_done(store, asked) and finish_done(store, silent)
    (member,) = store.client.zrange(CALLBACKS_DUE, 0, -1)
    delivery = store.client.hgetall(callback_key(member.decode()))
    assert delivery[b"job_id"] == asked.encode() and delivery[b"attempts"] == b"0"
    assert orjson.loads(delivery[b"record"])["state"] == "done"


def test_a_finish_sent_twice_queues_the_callback_once(store: JobStore) -> None:
    job_id = queue_with_callback(store, "http://127.0.0.1:9/hook")
    delivery, _ = store.take("c-0")
    result = {"state": "done", "chars": 3, "text": "abc"}
    assert store.finish(delivery, result).written
    assert not store.finish(delivery, result).written  # redis-py re-sent it, say
    assert store.client.zcard(CALLBACKS_DUE) == 1
    assert ids_of(CallbackQueue(store.client).claim(10, 60)) == [job_id]


def ids_of(taken: list) -> list[str]:
    return [callback.record["id"] for callback in taken]


def test_a_claimed_delivery_is_not_claimed_again_until_its_lease_ends(store: JobStore) -> None:
    job_id = queue_with_callback(store, "http://127.0.0.1:9/hook")
    finish_done(store, job_id)
    queue = CallbackQueue(store.client)
    (taken,) = queue.claim(10, lease=0.3)
    assert (taken.url, taken.attempts, taken.record["id"]) == ("http://127.0.0.1:9/hook", 0,
                                                                job_id)
    assert queue.claim(10, lease=0.3) == []  # leased: another sender leaves it alone
    again = wait_for(lambda: queue.claim(10, lease=60), 5, "the lease to end")
    assert [c.delivery_id for c in again] == [taken.delivery_id]  # at least once
    queue.retry_at(taken.delivery_id, 0, 1, "refused")
    (retried,) = queue.claim(10, lease=60)
    assert retried.attempts == 1
    queue.give_up(retried, 2, "refused again")
    assert store.client.zcard(CALLBACKS_DUE) == 0
    assert not store.client.exists(callback_key(taken.delivery_id))
    assert orjson.loads(store.client.lindex(CALLBACKS_GIVEN_UP, 0))["job_id"] == job_id
