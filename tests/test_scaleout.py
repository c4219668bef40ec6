"""From one box to many: two installations share one Redis, and survive losing each other.

"Host A" runs the api and workers, "host B" only workers; both are whole installations
(supervisord, var/, logs/) in temp folders with their own CONSUMER_PREFIX, pointed at one
redis-server on a loopback port that only knows an ACL user (so every process really
logs in with the URL's credentials). The Redis URL forms are checked on the clients
every program uses (`connect`, `connect_async`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil
import pytest
import redis

from daemon.config import Settings
from daemon.connection import connect, connect_async
from daemon.pool.child import CLAIM_EVERY
from daemon.store import (
    GROUP,
    STREAM,
    AsyncJobStore,
    JobStore,
    ensure_group,
    heartbeat_key,
    job_key,
    text_key,
)
from devtools.stack import Stack, free_port, wait_for
from tests.client import Client
from tests.conftest import CORPUS, RedisServer, squash
from tests.fakes import HUNG, FakeTools

USER, PASSWORD = "textractd", "s3cret/with:odd@chars"
QUOTED_PASSWORD = "s3cret%2Fwith%3Aodd%40chars"
# What docs/scaling.md tells operators to grant: textractd's keys and channels only.
ACL_RULES = ("~textractd:*", "&textractd:*", "+@all")
JOB_TIMEOUT, CLAIM_IDLE = 5, 6
# Small real documents of several families, so the jobs are short but really extracted.
KINDS = ("txt", "csv", "html", "json", "eml", "docx", "pdf", "xlsx", "pptx")
DOCS = [CORPUS / "textract-tests" / kind / f"standardized_text.{kind}" for kind in KINDS]
# OCR takes a little longer, so the jobs of a batch overlap on both hosts.
SCANS = [CORPUS / "textract-tests" / kind / f"standardized_text.{kind}" for kind in ("png", "jpg")]


def _acl_redis(root: Path, port: int = 0) -> RedisServer:
    """A redis-server where only USER may log in: `default` is switched off."""
    server = RedisServer(root, port).start()
    admin = server.client()
    admin.execute_command("ACL", "SETUSER", USER, "on", f">{PASSWORD}", *ACL_RULES)
    admin.execute_command("ACL", "SETUSER", "default", "off")
    return server


def _roundtrip(settings: Settings) -> str:
    """Submit with the api's client, read it back with a worker's: the URL works for both."""
    async def submit() -> str:
        client = connect_async(settings)
        try:
            record = {"id": "url-probe", "state": "queued", "attempts": "0",
                      "family": "python"}
            return await AsyncJobStore(client, settings).submit(record, b"payload")
        finally:
            await client.aclose()

    sync = connect(settings)
    ensure_group(sync)
    entry = asyncio.run(submit())
    delivery = JobStore(sync, settings).read("probe-0", 1000)
    assert [d.job_id for d in delivery] == ["url-probe"]
    sync.close()
    return entry


# --- settings and URLs ----------------------------------------------------------------
def test_the_consumer_prefix_defaults_to_the_hostname(tmp_path: Path) -> None:
    assert Settings.from_env({"TEXTRACTD_HOME": str(tmp_path)}).consumer_prefix == (
        socket.gethostname())
    settings = Settings.from_env({"TEXTRACTD_HOME": str(tmp_path), "CONSUMER_PREFIX": "b2"})
    assert settings.consumer_prefix == "b2"


@pytest.mark.slow
def test_a_redis_url_with_user_and_password_logs_in_as_that_acl_user(tmp_path: Path) -> None:
    server = _acl_redis(tmp_path, free_port())
    try:
        url = f"redis://{USER}:{QUOTED_PASSWORD}@127.0.0.1:{server.port}/0"
        assert _roundtrip(Settings(redis_url=url))
        wrong = Settings(redis_url=f"redis://{USER}:nope@127.0.0.1:{server.port}/0",
                         redis_max_retries=0)
        with pytest.raises(redis.AuthenticationError):
            connect(wrong).ping()
        # The password-only form authenticates the default user (requirepass).
        admin = redis.Redis(port=server.port, username=USER, password=PASSWORD)
        admin.execute_command("ACL", "SETUSER", "default", "on", ">pw")
        assert connect(Settings(redis_url=f"redis://:pw@127.0.0.1:{server.port}/1")).ping()
    finally:
        server.stop()


@pytest.mark.slow
def test_a_unix_socket_url_connects_both_clients(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    try:
        assert _roundtrip(Settings(redis_url=f"unix://{server.socket}?db=2"))
        assert server.client().dbsize() == 0  # db 0 untouched: the ?db= was honoured
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_a_rediss_url_talks_tls_and_checks_the_server_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port),
         "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file",
         str(cert), "--tls-auth-clients", "no", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
        try:
            wait_for(lambda: process.poll() is not None or connect(
                Settings(redis_url=url), fast_fail=True).ping(), 10,
                "redis-server to answer over TLS")
        except TimeoutError:
            pass  # the assertions below say what went wrong
        if process.poll() is not None:
            pytest.skip("this redis-server was built without TLS support")
        assert _roundtrip(Settings(redis_url=url))
        # Without our CA the self-signed server is refused: the certificate is checked.
        with pytest.raises(redis.ConnectionError):
            connect(Settings(redis_url=f"rediss://127.0.0.1:{port}/0",
                             redis_max_retries=0)).ping()
    finally:
        process.terminate()
        process.wait(10)


# --- two hosts, one Redis -------------------------------------------------------------
@dataclass
class Hosts:
    redis: RedisServer
    a: Stack  # api + workers
    b: Stack  # workers only
    b_tools: FakeTools  # host B runs tests/fakes/pdftotext (the real one until told)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.a.env["REDIS_URL"], socket_timeout=5)


def _host_env(url: str, prefix: str) -> dict[str, str]:
    return {"REDIS_URL": url, "CONSUMER_PREFIX": prefix, "WORKER_PROCESSES": "2",
            "JOB_TIMEOUT": str(JOB_TIMEOUT), "CLAIM_IDLE": str(CLAIM_IDLE),
            "RESULT_TTL": "600"}


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    root = Path(tempfile.mkdtemp(prefix="txo-"))
    server = _acl_redis(root / "redis", free_port())
    url = f"redis://{USER}:{QUOTED_PASSWORD}@127.0.0.1:{server.port}/0"
    a = Stack(root / "host-a", embedded_redis=False, env=_host_env(url, "host-a"))
    b_tools = FakeTools(root / "host-b-tools")
    b = Stack(root / "host-b", embedded_redis=False, api=False, workers=True,
              env=_host_env(url, "host-b") | b_tools.env())
    try:
        a.start()
        b.start()
        found = Hosts(server, a, b, b_tools)
        with found.client() as r:
            wait_for(lambda: len(list(r.scan_iter(heartbeat_key("host-*")))) >= 4, 60,
                     "both hosts' workers")
        yield found
    finally:
        for stack in (a, b):
            stack.stop()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _submit_all(stack: Stack, count: int, docs: list[Path] = DOCS) -> list[str]:
    payloads = [(p.name, p.read_bytes()) for p in docs]
    client = Client(stack, timeout=30)

    def one(i: int) -> str:
        name, data = payloads[i % len(payloads)]
        reply = client.upload(name, data)
        assert reply.status == 202, reply.body
        return reply.json()["id"]

    with ThreadPoolExecutor(6) as pool:
        return list(pool.map(one, range(count)))


def _jobs(client: redis.Redis, job_ids: list[str], *fields: str) -> list[dict[str, str]]:
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(job_key(job_id), *fields)
    return [{f: (v.decode() if v is not None else "") for f, v in zip(fields, row, strict=True)}
            for row in pipe.execute()]


def _all_done(client: redis.Redis, job_ids: list[str]) -> bool:
    return all(j["state"] == "done" for j in _jobs(client, job_ids, "state"))


def _host(consumer: str) -> str:
    return consumer.rpartition("-")[0]


def _tree(stack: Stack) -> list[psutil.Process]:
    root = psutil.Process(stack.process.pid)
    return [root, *root.children(recursive=True)]


@pytest.mark.slow
def test_each_host_and_slot_reads_under_a_consumer_name_of_its_own(hosts: Hosts) -> None:
    expected = {"host-a-0", "host-a-1", "host-b-0", "host-b-1"}
    with hosts.client() as r:
        wait_for(lambda: {c["name"].decode() for c in r.xinfo_consumers(STREAM, GROUP)}
                 >= expected, 20, "every child to join the group")
        names = {c["name"].decode() for c in r.xinfo_consumers(STREAM, GROUP)}
        beats = {k.decode().rpartition(":")[2]: orjson.loads(r.get(k))["pid"]
                 for k in r.scan_iter(heartbeat_key("host-*"))}
    assert names == expected
    # Each name's heartbeat comes from a child of that host's own pool, not the other's.
    for stack, prefix in ((hosts.a, "host-a"), (hosts.b, "host-b")):
        children = {p.pid for p in psutil.Process(stack.program_pid("workers")).children()}
        mine = {beats[f"{prefix}-{slot}"] for slot in (0, 1)}
        assert mine == children, (prefix, beats, children)


@pytest.mark.slow
def test_two_installations_share_the_work_of_200_jobs(hosts: Hosts) -> None:
    started = time.monotonic()
    job_ids = _submit_all(hosts.a, 200)
    with hosts.client() as r:
        wait_for(lambda: _all_done(r, job_ids), 120, "200 jobs to be done")
        consumers = [j["consumer"] for j in _jobs(r, job_ids, "consumer")]
        texts = r.mget([text_key(job_id) for job_id in job_ids])
    # Really extracted, whichever host did it.
    assert all(b"thequickbrownfox" in squash(t.decode()).lower().encode() for t in texts)
    seconds = time.monotonic() - started
    share = Counter(_host(c) for c in consumers)
    print(f"\n200 jobs in {seconds:.1f} s: {dict(share)} by host, "
          f"{dict(Counter(consumers))} by consumer")
    assert set(share) == {"host-a", "host-b"}
    assert min(share.values()) >= 40, share  # each host did at least a fifth


@pytest.mark.slow
def test_an_installation_killed_mid_load_leaves_its_jobs_to_the_other(hosts: Hosts) -> None:
    # Host B's pdftotext hangs from now on (host A's is the real one): the first PDF that
    # B takes keeps its job B's until the kill, however fast the other jobs go. Waiting
    # for B to hold some job and killing it after raced B finishing that job meanwhile.
    hosts.b_tools.mode("pdftotext", "hang")
    job_ids = _submit_all(hosts.a, 120, DOCS + SCANS)
    with hosts.client() as r:
        # A tool well within its job's deadline: one found late (the uploads took long on
        # a loaded machine) could be killed with its child by B's master at JOB_TIMEOUT,
        # its job retried off B's pending list, before this test's kill.
        # The hung pdftotext itself: B's children also run the fake tesseract (passing to
        # the real one) on this batch's images, and killing B while one did stranded no PDF.
        held = wait_for(lambda: hosts.b_tools.worker_of_running_tool(
            younger_than=JOB_TIMEOUT / 2, command=HUNG), 60,
            "host B to be extracting a PDF of this batch", interval=0.02)
        assert held.pid in {p.pid for p in _tree(hosts.b)}
        # The whole installation at once: supervisord, the pool master, its children and
        # whatever tools they run, as a host losing power would.
        tree = _tree(hosts.b)
        killed_at = time.time()
        for process in tree:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _gone, alive = psutil.wait_procs(tree, timeout=10)
        assert not alive
        hosts.b.process.wait(5)

        stranded = {}
        for consumer in ("host-b-0", "host-b-1"):
            for entry in r.xpending_range(STREAM, GROUP, "-", "+", 100, consumername=consumer):
                fields = r.xrange(STREAM, entry["message_id"], entry["message_id"])[0][1]
                stranded[fields[b"job"].decode()] = consumer
        assert stranded, "host B held no job when it was killed"
        stranded_ids = list(stranded)
        # Among them the PDF that B's hung tool was extracting when it was killed.
        assert "standardized_text.pdf" in {
            j["filename"] for j in _jobs(r, stranded_ids, "filename")}, stranded

        with contextlib.suppress(TimeoutError):
            wait_for(lambda: _all_done(r, job_ids), 90, "every job of the batch to be done")
        states = dict(zip(job_ids, _jobs(r, job_ids, "state", "consumer"), strict=True))
        taken = _jobs(r, stranded_ids, "consumer", "attempts", "started_at", "finished_at")

    # Every accepted job ends done, host B's included.
    assert all(j["state"] == "done" for j in states.values()), {
        job: j for job, j in states.items() if j["state"] != "done"}

    assert all(_host(j["consumer"]) == "host-a" for j in taken), taken
    assert all(int(j["attempts"]) >= 2 for j in taken), taken
    def reclaimed() -> bool:  # the lines come through supervisord a moment after
        return set(stranded_ids) <= {e["job_id"] for e in hosts.a.log_events("workers")
                                     if e.get("event") == "job.reclaimed"}

    wait_for(reclaimed, 10, "a reclaim line for every stranded job")  # XAUTOCLAIM, not luck
    first = min(float(j["started_at"]) for j in taken) - killed_at
    last = max(float(j["finished_at"]) for j in taken) - killed_at
    bound = CLAIM_IDLE + 2 * CLAIM_EVERY + 4
    print(f"\nhost B killed holding {len(stranded)} job(s); host A took the first over "
          f"{first:.1f} s later, finished the last {last:.1f} s later "
          f"(CLAIM_IDLE={CLAIM_IDLE} s, claim pass every {CLAIM_EVERY} s, bound {bound} s)")
    assert last <= bound
