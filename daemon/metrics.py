"""Counters that add up across every process and host, kept in Redis: the recorders.

Each process buffers its counts in memory and adds them to Redis hashes with one MULTI
round trip at most once a second: the api through `RequestMetrics` (a background task
flushes it), the pool children through `JobMetrics`. `/metrics` reads them back
(`daemon.api.exposition`).

Hash fields, so any tool can read them (`redis-cli hgetall textractd:metrics:requests`):
  textractd:metrics:requests         <method>|<route>|<status> -> count
  textractd:metrics:request_seconds  <route>|<le> -> count in that bucket (not cumulative),
                                     <route>|count, <route>|sum
  textractd:metrics:extract_seconds  <format>|<le>, <format>|count, <format>|sum (same shape)
  textractd:metrics:volume           bytes_in|<format>, chars_out|<format>
  textractd:metrics:jobs             submitted (the api), finished, done, failed:<code> (FINISH)
  textractd:metrics:restarts         <reason> -> count, and :minute:<epoch minute> buckets
"""

from __future__ import annotations

import time
from collections import Counter

import redis

from daemon.store import (
    EXTRACT_SECONDS,
    JOB_COUNTERS,
    REQUEST_SECONDS,
    REQUESTS,
    RESTARTS,
    RESTARTS_BY_MINUTE_TTL,
    VOLUME,
    restarts_minute_key,
)

# Upper bounds in seconds. Requests can wait for their job (?wait= up to MAX_WAIT).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0)
EXTRACT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
FLUSH_EVERY = 1.0
# Routes whose 200/202 (and /v1/extract's 422: the job ran and failed) mean a job was stored.
SUBMIT_ROUTES = {("POST", "/v1/jobs"): {200, 202}, ("POST", "/v1/extract"): {200, 202, 422}}


# --- buffers ------------------------------------------------------------------------------
class Buffer:
    """Counts waiting for the next flush: (hash, field) -> increment."""

    def __init__(self) -> None:
        self.ints: Counter[tuple[str, str]] = Counter()
        self.floats: Counter[tuple[str, str]] = Counter()
        self._last_flush = time.monotonic()

    def observe(self, key: str, label: str, value: float, buckets: tuple[float, ...]) -> None:
        le = next((f"{b:g}" for b in buckets if value <= b), "+Inf")
        self.ints[key, f"{label}|{le}"] += 1
        self.ints[key, f"{label}|count"] += 1
        # A Counter adds floats as well as ints (and update() adds, which _give_back needs).
        self.floats[key, f"{label}|sum"] += value  # type: ignore[assignment]  # float sums

    def __bool__(self) -> bool:
        return bool(self.ints or self.floats)

    def _take(self) -> tuple[Counter, Counter]:
        taken = (self.ints, self.floats)
        self.ints, self.floats = Counter(), Counter()
        self._last_flush = time.monotonic()
        return taken

    def _give_back(self, taken: tuple[Counter, Counter]) -> None:
        # Redis was down: keep the counts for the next flush rather than lose them. The
        # buffer stays small: its size is bounded by the label sets, not by the traffic.
        self.ints.update(taken[0])
        self.floats.update(taken[1])

    @staticmethod
    def _queue(pipe: redis.client.Pipeline | redis.asyncio.client.Pipeline,
               taken: tuple[Counter, Counter]) -> None:
        for (key, name), n in taken[0].items():
            pipe.hincrby(key, name, n)
        for (key, name), x in taken[1].items():
            pipe.hincrbyfloat(key, name, x)

    def due(self) -> bool:
        return bool(self) and time.monotonic() - self._last_flush >= FLUSH_EVERY

    def flush(self, client: redis.Redis) -> None:
        """One MULTI round trip; on failure the counts stay buffered and the error is raised."""
        if not self:
            return
        taken = self._take()
        try:
            with client.pipeline(transaction=True) as pipe:
                self._queue(pipe, taken)
                pipe.execute()
        except Exception:
            self._give_back(taken)
            raise

    async def flush_async(self, client: redis.asyncio.Redis) -> None:
        if not self:
            return
        taken = self._take()
        try:
            async with client.pipeline(transaction=True) as pipe:
                self._queue(pipe, taken)
                await pipe.execute()
        except BaseException:
            self._give_back(taken)
            raise


class RequestMetrics(Buffer):
    """The api's recorder: `app[METRICS_HOOK]` calls it once per request, in memory only."""

    def __call__(self, route: str, method: str, status: int, seconds: float) -> None:
        self.ints[REQUESTS, f"{method}|{route}|{status}"] += 1
        self.observe(REQUEST_SECONDS, route, seconds, REQUEST_BUCKETS)
        if status in SUBMIT_ROUTES.get((method, route), ()):
            self.ints[JOB_COUNTERS, "submitted"] += 1


class JobMetrics(Buffer):
    """A pool child's recorder: `record_job` after each extraction, `flush_due` in its loop."""

    def record_job(self, fmt: str, duration_s: float, bytes_in: int, chars_out: int) -> None:
        fmt = fmt or "unknown"
        self.observe(EXTRACT_SECONDS, fmt, duration_s, EXTRACT_BUCKETS)
        self.ints[VOLUME, f"bytes_in|{fmt}"] += int(bytes_in)
        self.ints[VOLUME, f"chars_out|{fmt}"] += int(chars_out)

    def flush_due(self, client: redis.Redis) -> bool:
        """Flush when a second has passed since the last one; True if it flushed."""
        if not self.due():
            return False
        self.flush(client)
        return True


def record_restart(client: redis.Redis, reason: str, now: float | None = None) -> None:
    """Count a child's exit by reason, in total and in this minute's bucket (one trip)."""
    key = restarts_minute_key(int((now or time.time()) // 60))
    with client.pipeline(transaction=True) as pipe:
        pipe.hincrby(RESTARTS, reason, 1)
        pipe.hincrby(key, reason, 1)
        pipe.expire(key, RESTARTS_BY_MINUTE_TTL)
        pipe.execute()
