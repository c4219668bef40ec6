"""Waiting for a result is event-driven and cannot miss a job that finishes meanwhile."""

from __future__ import annotations

import asyncio
import time

import orjson
import redis.asyncio as aredis

from daemon.config import Settings
from daemon.store import DONE_CHANNEL, AsyncJobStore, job_key
from daemon.waiters import Waiters

JOB = "0123456789abcdef0123456789abcdef"


async def started_waiters(url: str) -> tuple[Waiters, aredis.Redis]:
    settings = Settings.from_env({"REDIS_URL": url})
    client = aredis.Redis.from_url(url)
    waiters = Waiters(client, AsyncJobStore(client, settings))
    await waiters.start()
    return waiters, client


async def test_a_job_already_finished_is_returned_without_any_message(redis_server) -> None:
    waiters, client = await started_waiters(redis_server.url)
    await client.hset(job_key(JOB), mapping={"id": JOB, "state": "done"})
    started = time.monotonic()
    job = await waiters.wait(JOB, 10)
    assert job["state"] == "done" and time.monotonic() - started < 1
    await waiters.close()


async def test_a_waiter_wakes_on_the_done_message_not_at_its_timeout(redis_server) -> None:
    waiters, client = await started_waiters(redis_server.url)
    await client.hset(job_key(JOB), mapping={"id": JOB, "state": "processing"})
    waiting = asyncio.create_task(waiters.wait(JOB, 30))

    async def registered() -> None:
        while not waiters._futures.get(JOB):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(registered(), 5)  # the waiter has registered and checked
    await client.hset(job_key(JOB), "state", "done")
    await client.publish(DONE_CHANNEL, JOB)
    started = time.monotonic()
    job = await asyncio.wait_for(waiting, 5)
    assert job["state"] == "done" and time.monotonic() - started < 2
    await waiters.close()


async def test_a_wait_that_times_out_returns_the_job_as_it_is(redis_server) -> None:
    waiters, client = await started_waiters(redis_server.url)
    await client.hset(job_key(JOB), mapping={"id": JOB, "state": "queued"})
    started = time.monotonic()
    job = await waiters.wait(JOB, 0.3)
    assert job["state"] == "queued" and 0.25 < time.monotonic() - started < 3
    await waiters.close()


async def test_a_waiter_answers_from_the_message_without_reading_the_job(redis_server) -> None:
    waiters, client = await started_waiters(redis_server.url)
    # Redis still says "processing": only the message can say "done".
    await client.hset(job_key(JOB), mapping={"id": JOB, "state": "processing"})
    waiting = asyncio.create_task(waiters.wait(JOB, 30))
    while not waiters._futures.get(JOB):
        await asyncio.sleep(0.01)
    carried = orjson.dumps({"record": {"id": JOB, "state": "done", "chars": "2"}, "text": "hi"})
    await client.publish(DONE_CHANNEL, JOB.encode() + b"\n" + carried)

    job = await asyncio.wait_for(waiting, 5)

    assert (job["state"], job["text"], job["chars"]) == ("done", "hi", 2)
    await waiters.close()
