"""Waiting for a job to finish without polling: one pub/sub subscription per api process.

Workers PUBLISH a job's id on the done channel in the same script that stores its
result, with the job itself when its text is short, so most waiters need no read back. A
waiter registers first and checks the state second, so a job that finishes in between is
seen either by the check or by the message. When the subscription drops
(Redis restarted), every waiter is woken to check again, since messages sent while it was
down are lost. Whatever else in the process hears done messages (the console's list of
recent failures) is a listener here, not a second subscription: one copy of each message
per api process, from Redis and through the parser.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

import redis.asyncio as aredis
import structlog

from daemon.connection import REDIS_DOWN
from daemon.store import (
    DONE_CHANNEL,
    FINAL_STATES,
    AsyncJobStore,
    parse_done_message,
)

log = structlog.get_logger()


class Waiters:
    def __init__(self, client: aredis.Redis, store: AsyncJobStore) -> None:
        self.client = client
        self.store = store
        self._futures: dict[str, set[asyncio.Future]] = defaultdict(set)
        self._task: asyncio.Task | None = None
        self._subscribed = asyncio.Event()
        self.closing = False
        # Called with every done message's raw bytes, in the listener task: keep them cheap.
        self.listeners: list[Callable[[bytes], None]] = []

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="done-listener")

    def release_all(self) -> None:
        """Answer every waiter now with the job as it is: the api is stopping."""
        self.closing = True
        self._wake_all()

    async def close(self) -> None:
        self.release_all()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def register(self, job_id: str) -> asyncio.Future:
        """A future woken when `job_id` is done; pass it to wait() with the job as stored.

        Registered before the job is stored, it spares wait() its first look in Redis."""
        future = asyncio.get_running_loop().create_future()
        self._futures[job_id].add(future)
        return future

    async def wait(self, job_id: str, timeout: float, *,
                   registered: asyncio.Future | None = None,
                   current: dict | None = None) -> dict | None:
        """The job once final, or as it is when `timeout` passes (None if unknown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            future = registered or self.register(job_id)
            try:
                job = current if registered else await self.store.get(job_id)
                registered = current = None
                remaining = deadline - loop.time()
                if job is None or job["state"] in FINAL_STATES or remaining <= 0 or self.closing:
                    return job
                if not self._subscribed.is_set():
                    # No subscription: messages could be missed; check again shortly.
                    remaining = min(remaining, 0.5)
                try:
                    # asyncio.timeout, not wait_for: no waiter future and callback pair
                    # per wait, on the path every waiting upload takes.
                    async with asyncio.timeout(remaining):
                        carried = await future
                except TimeoutError:
                    if loop.time() >= deadline:
                        return await self.store.get(job_id)
                else:
                    if carried is not None:
                        return carried
            finally:
                self.discard(job_id, future)

    async def wait_many(self, jobs: list[dict], timeout: float,
                        registered: dict[str, asyncio.Future]) -> list[dict]:
        """Each of `jobs` (as stored, each registered first) once final, or as it is when
        `timeout` passes: one deadline for them all. An entry without an id (a refused
        part of a batch) is passed through."""
        async def one(job: dict) -> dict:
            if job["id"] is None:
                return job
            return await self.wait(job["id"], timeout, registered=registered[job["id"]],
                                   current=job) or job

        return list(await asyncio.gather(*(one(job) for job in jobs)))

    def discard(self, job_id: str, future: asyncio.Future) -> None:
        futures = self._futures.get(job_id)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self._futures[job_id]

    def _wake(self, job_id: str, job: dict | None = None) -> None:
        """Wake the waiters of `job_id`, with the final job if the message carried it."""
        for future in self._futures.get(job_id, ()):
            if not future.done():
                future.set_result(job)

    def _on_message(self, data: bytes) -> None:
        for listener in self.listeners:
            listener(data)
        job_id, _, _ = data.partition(b"\n")
        if job_id.decode() in self._futures:  # every api hears every job: parse only ours
            self._wake(*parse_done_message(data))

    def _wake_all(self) -> None:
        for job_id in list(self._futures):
            self._wake(job_id)

    async def _listen(self) -> None:
        delay = 0.1
        while not self.closing:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(DONE_CHANNEL)
                self._subscribed.set()
                self._wake_all()  # anything finished while we were not listening
                delay = 0.1
                async for message in pubsub.listen():
                    if message and message.get("type") == "message":
                        self._on_message(message["data"])
            except REDIS_DOWN as exc:
                self._subscribed.clear()
                log.warning("waiters.subscription_lost", error=str(exc), retry_in=delay)
                self._wake_all()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                self._subscribed.clear()
                await pubsub.aclose()
