"""The pool's drain rate, sampled from Redis, for a fair Retry-After when the queue is full."""

from __future__ import annotations

import asyncio
import math
import time

import redis.asyncio as aredis
import structlog

from daemon.store import JOB_COUNTERS

log = structlog.get_logger()

SAMPLE_EVERY = 2.0  # seconds


class DrainRate:
    """Jobs finished per second across the whole pool, sampled from Redis counters."""

    def __init__(self) -> None:
        self.rate = 0.0
        self._last: tuple[float, int] | None = None

    def observe(self, finished: int) -> None:
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            instant = max(0, finished - self._last[1]) / (now - self._last[0])
            self.rate = instant if self.rate == 0 else 0.7 * self.rate + 0.3 * instant
        self._last = (now, finished)

    def retry_after(self, depth: int) -> int:
        """Seconds until about a tenth of the queue has drained: a fair time to come back."""
        if self.rate <= 0:
            return 30
        return max(1, min(300, math.ceil(max(1, depth // 10) / self.rate)))


async def sample_drain(drain: DrainRate, client: aredis.Redis) -> None:
    """Feed `drain` the pool's finished-jobs counter every SAMPLE_EVERY seconds, forever."""
    while True:
        try:
            drain.observe(int(await client.hget(JOB_COUNTERS, "finished") or 0))
        except Exception as exc:
            log.debug("drain.sample_failed", error=str(exc))
        await asyncio.sleep(SAMPLE_EVERY)
