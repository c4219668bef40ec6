"""Sentinel: the service finds its master through three sentinels and follows a failover.

A master, a replica and three sentinels run on loopback in a temp folder (each sentinel
rewrites its own config file, so each gets one there). The failover test kills the
master under load and checks that the api and the workers follow the promoted replica
without any program being restarted, and that with REDIS_WAIT_FOR_REPLICAS=1 no job
that was answered 202 is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import redis
import redis.asyncio as aredis

from daemon.config import Settings
from daemon.connection import _sentinel_target, connect, connect_async
from daemon.errors import ReplicationTimeout
from daemon.store import (
    JOB_COUNTERS,
    PREFIX,
    AsyncJobStore,
    ensure_group,
    job_key,
)
from devtools.stack import Stack, free_port, wait_for
from tests.client import Client
from tests.conftest import CORPUS, RedisServer

SERVICE = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
FAST_SYNC = ("--repl-diskless-sync-delay", "0")
# Tiny documents: the test is about Redis, not about extraction speed.
DOCS = [CORPUS / "textract-tests" / kind / f"standardized_text.{kind}"
        for kind in ("txt", "csv", "html", "json")]


class Sentinels:
    """A master, one replica and three sentinels (quorum 2), all on loopback."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Diskless sync waits 5 s by default for more replicas to share one transfer.
        self.master = RedisServer(root / "master", free_port(), *FAST_SYNC)
        self.replica: RedisServer | None = None
        self.ports = [free_port() for _ in range(3)]
        self.processes: list[subprocess.Popen] = []

    def start(self) -> Sentinels:
        self.master.start()
        self.replica = RedisServer(self.root / "replica", free_port(), *FAST_SYNC,
                                   "--replicaof", "127.0.0.1", str(self.master.port)).start()
        wait_for(lambda: self.replica.client().info("replication")["master_link_status"]
                 == "up", 15, "the replica to sync")
        # Each sentinel is told its peers and the replica up front (the lines a sentinel
        # writes into its own config), instead of learning them from hello messages sent
        # every 2 s: the group is ready at once.
        ids = {port: secrets.token_hex(20) for port in self.ports}
        for port in self.ports:
            conf = self.root / f"sentinel-{port}.conf"
            peers = "".join(f"sentinel known-sentinel {SERVICE} 127.0.0.1 {p} {ids[p]}\n"
                            for p in self.ports if p != port)
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {self.root}\n"
                f"sentinel myid {ids[port]}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
                f"sentinel known-replica {SERVICE} 127.0.0.1 {self.replica.port}\n{peers}")
            with open(self.root / f"sentinel-{port}.log", "wb") as log:  # the child has a copy
                self.processes.append(subprocess.Popen(
                    ["redis-server", str(conf), "--sentinel"], stdout=log,
                    stderr=subprocess.STDOUT))
        # A failover needs a quorum that knows the replica and each other.
        wait_for(self._all_acquainted, 20, "the sentinels to discover each other")
        return self

    def restart_old_master_as_replica(self) -> None:
        """Start the killed master again, as the promoted replica's replica.

        As a host brought back after a failover is pointed at the new master. Left to the
        sentinels, the conversion waits for four of their 2 s hello periods after one of
        their 10 s INFO polls (compiled-in, not configurable): 10-20 s in which no replica
        confirms a write, far more on a loaded box."""
        self.master = RedisServer(self.master.root, self.master.port, *FAST_SYNC,
                                  "--replicaof", "127.0.0.1", str(self.replica.port)).start()

    def _all_acquainted(self) -> bool:
        for port in self.ports:
            state = self.sentinel(port).sentinel_master(SERVICE)
            if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                return False
        return True

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis("127.0.0.1", port, socket_timeout=2, decode_responses=True)

    def master_port(self) -> int:
        """The master's port as the sentinels' majority sees it."""
        ports = []
        for port in self.ports:
            try:
                ports.append(int(self.sentinel(port).sentinel_get_master_addr_by_name(
                    SERVICE)[1]))
            except redis.RedisError:
                continue
        return max(set(ports), key=ports.count)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
        for server in (self.master, self.replica):
            if server is not None:
                server.stop()


@pytest.fixture
def sentinels() -> Iterator[Sentinels]:
    group = Sentinels(Path(tempfile.mkdtemp(prefix="txs-")))
    try:
        yield group.start()
    finally:
        group.stop()
        shutil.rmtree(group.root, ignore_errors=True)


class SentinelStack(Stack):
    """A stack whose test-side client also goes through the sentinels."""

    def redis(self) -> redis.Redis:
        return connect(Settings(redis_url=self.env["REDIS_URL"]))


# --- the URL ---------------------------------------------------------------------------
def test_a_sentinel_url_names_the_sentinels_the_service_and_the_credentials() -> None:
    hosts, service, master, sentinel = _sentinel_target(
        "redis+sentinel://app:p%40ss@10.0.0.1:26380,10.0.0.2,[::1]:26381/cache/2"
        "?sentinel_password=s3cret")
    assert hosts == [("10.0.0.1", 26380), ("10.0.0.2", 26379), ("::1", 26381)]
    assert service == "cache"
    assert master == {"username": "app", "password": "p@ss", "db": 2}
    assert sentinel == {"password": "s3cret"}
    assert _sentinel_target("redis://127.0.0.1:6379/0") is None
    with pytest.raises(ValueError, match="service_name"):
        _sentinel_target("redis+sentinel://127.0.0.1:26379")


async def _close_async(client: aredis.Redis) -> None:
    """Close `client` and the clients it asked the sentinels through, which its aclose()
    leaves open (redis-py): unclosed, they warn when collected, in whichever test."""
    await client.aclose()
    for sentinel in client.connection_pool.sentinel_manager.sentinels:
        await sentinel.aclose()


def _submit(settings: Settings, job_id: str) -> tuple[object, float]:
    """One AsyncJobStore.submit through connect_async: (its result or error, seconds)."""
    async def run() -> object:
        client = connect_async(settings)
        try:
            record = {"id": job_id, "state": "queued", "attempts": "0", "family": "python"}
            return await AsyncJobStore(client, settings).submit(record, b"payload")
        except Exception as exc:  # the outcome is what the caller looks at
            return exc
        finally:
            await _close_async(client)

    started = time.perf_counter()
    outcome = asyncio.run(run())
    return outcome, time.perf_counter() - started


@pytest.mark.slow
def test_a_sentinel_url_reaches_the_master_from_both_clients(sentinels: Sentinels) -> None:
    # A sentinel that is down, listed first, costs nothing: discovery moves on at once.
    dead = f"127.0.0.1:{free_port()},"
    url = sentinels.url.replace("redis+sentinel://", f"redis+sentinel://{dead}")
    started = time.perf_counter()
    client = connect(Settings(redis_url=url))
    ensure_group(client)
    client.set(f"{PREFIX}:probe", "sync")
    assert time.perf_counter() - started < 1.0
    # Written through the sentinels, read on the master itself: the URL found the master.
    assert sentinels.master.client().get(f"{PREFIX}:probe") == b"sync"

    job_id, seconds = _submit(Settings(redis_url=url, redis_wait_for_replicas=1), "probe")
    assert job_id and not isinstance(job_id, Exception), job_id
    # With REDIS_WAIT_FOR_REPLICAS=1 the submit returned after the replica had the job.
    assert sentinels.replica.client().hget(job_key("probe"), "state") == b"queued"
    print(f"\nsubmit with WAIT for 1 replica: {seconds * 1000:.1f} ms")


@pytest.mark.slow
def test_with_wait_for_replicas_a_submit_waits_for_a_replica_to_acknowledge_it(
        sentinels: Sentinels) -> None:
    settings = Settings(redis_url=sentinels.url, redis_wait_for_replicas=1)
    replica = psutil.Process(sentinels.replica.process.pid)
    replica.suspend()  # SIGSTOP: connected, but it acknowledges nothing
    try:
        outcome, seconds = _submit(settings, "frozen")
    finally:
        replica.resume()
    # The api's answer waited for the replica (WAIT's 1 s bound), then refused to promise
    # what it could not: no 202, a ReplicationTimeout naming the job (503 at the api).
    assert seconds >= 0.95, (outcome, seconds)
    assert isinstance(outcome, ReplicationTimeout) and outcome.job_id == "frozen", outcome
    print(f"\nsubmit while the only replica is frozen: {outcome!r} after {seconds:.2f} s")


@pytest.mark.slow
def test_a_connection_to_a_dead_master_asks_the_sentinels_again_when_it_retries(
        sentinels: Sentinels) -> None:
    """A worker blocked in XREADGROUP when the master dies must retry on the new master."""
    settings = Settings(redis_url=sentinels.url)
    key = f"{PREFIX}:wakeup"

    async def wait_async() -> object:
        client = connect_async(settings)
        try:
            return await client.blpop([key], timeout=20)
        finally:
            await _close_async(client)

    results: dict[str, object] = {}
    waiters = [
        threading.Thread(target=lambda: results.update(sync=connect(settings).blpop(
            [key], timeout=20))),
        threading.Thread(target=lambda: results.update(asyncio=asyncio.run(wait_async()))),
    ]
    for waiter in waiters:
        waiter.start()
    with sentinels.master.client() as master:
        wait_for(lambda: master.info("clients")["blocked_clients"] == 2, 10,
                 "both clients to block on the master")
    # Move the service by hand, as a failover would, then kill the old master under them.
    sentinels.replica.client().replicaof("NO", "ONE")
    for port in sentinels.ports:
        sentinel = sentinels.sentinel(port)
        sentinel.sentinel_remove(SERVICE)
        sentinel.sentinel_monitor(SERVICE, "127.0.0.1", sentinels.replica.port, 2)
    killed = time.perf_counter()
    sentinels.master.process.kill()
    sentinels.master.process.wait(5)
    with sentinels.replica.client() as new_master:
        wait_for(lambda: new_master.info("clients")["blocked_clients"] == 2, 10,
                 "both clients to block again, on the new master")
        followed = time.perf_counter() - killed
        new_master.rpush(key, "sync", "async")
    for waiter in waiters:
        waiter.join(10)
    assert sorted(v for _key, v in results.values()) == [b"async", b"sync"]
    print(f"\nblocked clients followed the new master {followed:.2f} s after the kill")
    # One backoff step, not a whole retry budget spent redialling the dead address.
    assert followed < 1.5


# --- failover under load ---------------------------------------------------------------
@dataclass
class Load:
    """Submits tiny documents from a few threads and records every answer."""

    client: Client
    threads: int = 3
    # (sent, answered, status, job id or, for a refusal, its Retry-After header)
    answers: list[tuple[float, float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        payloads = [(p.name, p.read_bytes()) for p in DOCS]
        for n in range(self.threads):
            threading.Thread(target=self._run, args=(payloads, n), daemon=True).start()
        return self

    def _run(self, payloads: list[tuple[str, bytes]], n: int) -> None:
        i = n
        while not self.stop.is_set():
            name, data = payloads[i % len(payloads)]
            i += 1
            sent = time.time()
            try:
                reply = self.client.upload(name, data)
                status, job_id = reply.status, (
                    reply.json().get("id", "") if reply.status == 202
                    else reply.headers.get("retry-after", ""))
            except OSError:
                status, job_id = 0, ""
            with self._lock:
                self.answers.append((sent, time.time(), status, job_id))
            # Pace the load: the workers should keep up, so the test measures Redis.
            self.stop.wait(0.1)

    def accepted(self, after: float = 0.0) -> list[str]:
        with self._lock:
            return [job for sent, _, status, job in self.answers
                    if status == 202 and sent >= after]

    def first_accepted_after(self, moment: float) -> float | None:
        with self._lock:
            times = [answered for sent, answered, status, _ in self.answers
                     if status == 202 and sent >= moment]
        return min(times) if times else None


def _states(client: redis.Redis, job_ids: list[str]) -> dict[str, str]:
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(job_key(job_id), "state", "finished_at")
    return {job_id: (values[0] or b"missing").decode()
            for job_id, values in zip(job_ids, pipe.execute(), strict=True)}


def _first_finished_after(client: redis.Redis, job_ids: list[str], moment: float) -> float:
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(job_key(job_id), "finished_at")
    finished = [float(v) for v in pipe.execute() if v is not None and float(v) > moment]
    return min(finished) if finished else 0.0


def _worker_children(stack: Stack) -> set[int]:
    return {p.pid for p in psutil.Process(stack.program_pid("workers")).children()}


@pytest.mark.slow
def test_the_service_follows_a_sentinel_failover_without_a_restart_or_a_lost_job(
        sentinels: Sentinels) -> None:
    stack = SentinelStack(embedded_redis=False, env={
        "REDIS_URL": sentinels.url, "REDIS_WAIT_FOR_REPLICAS": "1", "WORKER_PROCESSES": "2",
        "JOB_TIMEOUT": "5", "CLAIM_IDLE": "6", "CONSUMER_PREFIX": "sentinel-host"})
    load: Load | None = None
    try:
        stack.start()
        client = Client(stack, timeout=20)
        programs = {name: stack.program_pid(name) for name in ("api", "workers")}
        children = _worker_children(stack)
        old_master, new_master = sentinels.master.port, sentinels.replica.port
        assert sentinels.master_port() == old_master

        load = Load(client).start()
        with stack.redis() as r:
            wait_for(lambda: int(r.hget(JOB_COUNTERS, "done") or 0) >= 15, 30,
                     "jobs to flow before the failover")
        killed_at = time.time()
        sentinels.master.process.kill()  # SIGKILL: no goodbye to replicas or clients
        sentinels.master.process.wait(5)

        wait_for(lambda: sentinels.master_port() == new_master, 30,
                 "the sentinels to promote the replica", interval=0.05)
        promoted_at = time.time()
        # With REDIS_WAIT_FOR_REPLICAS=1 no 202 is given until a replica confirms the job
        # (until then: 503 replication_timeout). The old master, started again, rejoins
        # as the new master's replica.
        sentinels.restart_old_master_as_replica()
        accepted_at = wait_for(lambda: load.first_accepted_after(killed_at), 30,
                               "a job accepted after the failover")
        with stack.redis() as r:
            # Measured from the promotion: a job can still finish on the old master in the
            # instant of the kill.
            resumed_at = wait_for(
                lambda: _first_finished_after(r, load.accepted(), promoted_at), 30,
                "the workers to finish a job on the new master")
            finished_at = wait_for(
                lambda: _first_finished_after(r, load.accepted(killed_at), killed_at), 30,
                "a job accepted after the failover to finish")
            wait_for(lambda: len(load.accepted(killed_at)) >= 5, 30,
                     "more jobs accepted after the failover")
            load.stop.set()

            # Every 202 means the replica had the job: all of them end done, none lost.
            accepted = load.accepted()
            with contextlib.suppress(TimeoutError):
                wait_for(lambda: set(_states(r, accepted).values()) == {"done"}, 60,
                         "every accepted job to be done")
            states = _states(r, accepted)
            assert set(states.values()) == {"done"}, {
                job: state for job, state in states.items() if state != "done"}

        # The pubsub behind ?wait= follows the new master too.
        waited = client.upload(DOCS[0].name, DOCS[0].read_bytes(), wait=20)
        assert waited.status == 200 and waited.json()["state"] == "done"

        # Nothing was restarted: same programs, same pool children.
        assert {name: stack.program_pid(name) for name in programs} == programs
        assert _worker_children(stack) == children
        refused = [(status, retry_after) for _, _, status, retry_after in load.answers
                   if status != 202]
        # During the failover the api refused politely (503 + Retry-After): no 500, no hang.
        assert all(status == 503 and retry_after for status, retry_after in refused), refused
        print(f"\nsentinel failover: promoted {promoted_at - killed_at:.2f} s after the "
              f"master's SIGKILL (down-after {DOWN_AFTER_MS} ms); first 202 after "
              f"{accepted_at - killed_at:.2f} s; workers finished a job on the new master "
              f"{resumed_at - killed_at:.2f} s after the kill "
              f"({resumed_at - promoted_at:.2f} s after the promotion), the first job "
              f"accepted after the kill after "
              f"{finished_at - killed_at:.2f} s; {len(accepted)} jobs accepted, all done; "
              f"{len(refused)} answers were 503")
        assert promoted_at - killed_at < 10
        # The workers' retry backoff is capped at 2 s: they follow within one step of it,
        # counted from when jobs could be accepted again (a replica confirmed one).
        assert resumed_at - max(promoted_at, accepted_at) < 4
    finally:
        if load is not None:
            load.stop.set()
        stack.stop()
        shutil.rmtree(stack.root, ignore_errors=True)
