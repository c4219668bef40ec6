"""Waiting for a result is event-driven and cannot miss a job that finishes meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aredis

from daemon.api.waiters import Waiters
from daemon.config import Settings
from daemon.store import DONE_CHANNEL, AsyncJobStore, job_key

JOB = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def waiting(redis_server) -> AsyncIterator[tuple[Waiters, aredis.Redis]]:
    """Started Waiters on a throwaway redis-server, and a client; both closed after."""
    settings = Settings.from_env({"REDIS_URL": redis_server.url})
    client = aredis.Redis.from_url(redis_server.url)
    waiters = Waiters(client, AsyncJobStore(client, settings))
    await waiters.start()
    yield waiters, client
    await waiters.close()
    await client.aclose()


async def store_job(client: aredis.Redis, state: str) -> None:
    await client.hset(job_key(JOB), mapping={"id": JOB, "state": state})


async def registered(waiters: Waiters) -> None:
    """Returns once a waiter for JOB has registered (and so has checked the state)."""
    while not waiters._futures.get(JOB):
        await asyncio.sleep(0.01)


async def test_a_job_already_finished_is_returned_without_any_message(waiting) -> None:
    waiters, client = waiting
    await store_job(client, "done")
    started = time.monotonic()
    job = await waiters.wait(JOB, 10)
    assert job["state"] == "done" and time.monotonic() - started < 1


async def test_a_waiter_wakes_on_the_done_message_not_at_its_timeout(waiting) -> None:
    waiters, client = waiting
    await store_job(client, "processing")
    pending = asyncio.create_task(waiters.wait(JOB, 30))
    await asyncio.wait_for(registered(waiters), 5)
    await client.hset(job_key(JOB), "state", "done")
    await client.publish(DONE_CHANNEL, JOB)
    started = time.monotonic()
    job = await asyncio.wait_for(pending, 5)
    assert job["state"] == "done" and time.monotonic() - started < 2


async def test_a_wait_that_times_out_returns_the_job_as_it_is(waiting) -> None:
    waiters, client = waiting
    await store_job(client, "queued")
    started = time.monotonic()
    job = await waiters.wait(JOB, 0.3)
    assert job["state"] == "queued" and 0.25 < time.monotonic() - started < 3


async def test_a_waiter_answers_from_the_message_without_reading_the_job(waiting) -> None:
    waiters, client = waiting
    await store_job(client, "processing")  # Redis says "processing": only the message says done
    pending = asyncio.create_task(waiters.wait(JOB, 30))
    await asyncio.wait_for(registered(waiters), 5)
    carried = orjson.dumps({"record": {"id": JOB, "state": "done", "chars": "2"}, "text": "hi"})
    await client.publish(DONE_CHANNEL, JOB.encode() + b"\n" + carried)

    job = await asyncio.wait_for(pending, 5)

    assert (job["state"], job["text"], job["chars"]) == ("done", "hi", 2)
