"""An optional per-API-key request limit, shared by every api process through Redis.

A fixed one-minute window per key: one INCR (+ EXPIRE on the first hit) per request,
and only when RATE_LIMIT_PER_MINUTE is set. The key itself never reaches Redis or the
logs: only a short hash of it does.
"""

from __future__ import annotations

import hashlib
import time

import redis.asyncio as aredis

from daemon.store import rate_key


class RateLimiter:
    def __init__(self, client: aredis.Redis, per_minute: int) -> None:
        self.client = client
        self.per_minute = per_minute

    async def retry_after(self, api_key: str) -> int | None:
        """None while under the limit, else the seconds until the window turns."""
        now = time.time()
        window = int(now // 60)
        digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
        counter = rate_key(digest, window)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.incr(counter)
            pipe.expire(counter, 120, nx=True)
            count, _ = await pipe.execute()
        if count <= self.per_minute:
            return None
        return max(1, int((window + 1) * 60 - now) + 1)
