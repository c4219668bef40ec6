"""What the console page shows, in one JSON answer: GET /v1/console (admin keys only).

The page polls it every 1.5 s. Most of it is read from Redis at each call (the same
facts the health checks judge: `daemon.health.facts`); two things only a running process
can keep are kept here: a 15-minute ring of the job counters (jobs/s done and failed),
and the most recent failed jobs, heard on the done channel as they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from daemon.api import exposition
from daemon.api.middleware import json_response
from daemon.config import Settings
from daemon.connection import REDIS_DOWN
from daemon.health.facts import Facts, failed_total, gather_async, int_hash, workers_view
from daemon.store import JOB_COUNTERS, AsyncJobStore, parse_done_message

log = structlog.get_logger()

SAMPLE_EVERY = 2.0
RING_SECONDS = 15 * 60
RECENT_FAILURES = 30
# The routes whose latency the page shows: the job's own, not the page's polling.
JOB_ROUTES = ("/v1/jobs", "/v1/extract")


def quantile(buckets: dict[str, int], q: float) -> float | None:
    """The q-quantile of a cumulative histogram ({le: count}, "+Inf" last), linear inside
    its bucket as Prometheus's histogram_quantile does; None when it holds nothing."""
    bounds = [(float(le), n) for le, n in buckets.items()]
    total = bounds[-1][1] if bounds else 0
    if not total:
        return None
    rank = q * total
    lower, below = 0.0, 0
    for le, count in bounds:
        if count >= rank:
            if le == float("inf"):
                return lower  # past the last bound: the last bound is all that is known
            return lower + (le - lower) * ((rank - below) / max(1, count - below))
        lower, below = le, count
    return lower


def merged(hists: dict[str, dict], labels: tuple[str, ...] | None = None) -> dict[str, int]:
    """Several labels' cumulative buckets added up (the labels starting with one of
    `labels`; every label when None)."""
    out: dict[str, int] = {}
    for label, hist in hists.items():
        if labels is None or any(label.startswith(p) for p in labels):
            for le, n in hist["buckets"].items():
                out[le] = out.get(le, 0) + n
    return out


def latency(buckets: dict[str, int]) -> dict:
    p50, p95 = quantile(buckets, 0.5), quantile(buckets, 0.95)
    return {"p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "p95_ms": None if p95 is None else round(p95 * 1000, 1),
            "count": buckets.get("+Inf", 0)}


class Console:
    """The ring of job counters and the recent failures, kept by one background task."""

    def __init__(self, settings: Settings, store: AsyncJobStore) -> None:
        self.settings = settings
        self.store = store
        # (wall time, done, failed): jobs/s are the differences of neighbours
        self.ring: deque[tuple[float, int, int]] = deque(
            maxlen=int(RING_SECONDS / SAMPLE_EVERY) + 1)
        self.failures: deque[dict] = deque(maxlen=RECENT_FAILURES)
        self.stopping = asyncio.Event()

    async def sample(self) -> None:
        jobs = int_hash(await self.store.client.hgetall(JOB_COUNTERS))
        self.ring.append((time.time(), jobs.get("done", 0), failed_total(jobs)))

    async def sampling(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.sample()
            except REDIS_DOWN as exc:
                log.debug("console.sample_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), SAMPLE_EVERY)

    def heard(self, data: bytes) -> None:
        """A done message: keep the job if it failed (its record rides in the message)."""
        if b'"failed"' not in data:
            return  # most messages: not parsed at all
        _job_id, job = parse_done_message(data)
        if job and job["state"] == "failed":
            self.failures.appendleft({
                "job_id": job["id"], "code": (job["error"] or {}).get("code"),
                "message": (job["error"] or {}).get("message"),
                "request_id": job["request_id"], "filename": job["filename"],
                "finished_at": job["finished_at"], "attempts": job["attempts"]})

    def series(self) -> list[list[float]]:
        """[time, done/s, failed/s] between each pair of neighbouring samples."""
        samples = list(self.ring)
        out = []
        for (t0, d0, f0), (t1, d1, f1) in itertools.pairwise(samples):
            span = max(t1 - t0, 1e-3)
            out.append([round(t1, 3), round(max(0, d1 - d0) / span, 3),
                        round(max(0, f1 - f0) / span, 3)])
        return out

    async def overview(self) -> dict:
        client = self.store.client
        facts = await gather_async(client, self.settings)
        body: dict = {"at": time.time(), "redis": {"connected": not facts.error,
                                                   "error": facts.error or None},
                      "series": self.series(), "series_window_s": RING_SECONDS,
                      "failures": list(self.failures)}
        if facts.error:
            return body
        async with client.pipeline(transaction=False) as pipe:
            # the same commands on an asyncio pipeline (monitoring.py does the same)
            exposition.queue_reads(pipe)  # type: ignore[arg-type]  # typed for the blocking one
            counters = exposition.parse_reads(await pipe.execute())
        body.update({
            "queue": {"depth": facts.depth, "in_flight": facts.pending,
                      "waiting": facts.lag, "deferred": facts.deferred,
                      "dead_letters": facts.dead_letters},
            "jobs": {"submitted": facts.jobs.get("submitted", 0),
                     "done": facts.jobs.get("done", 0), "failed": failed_total(facts.jobs)},
            "latency": {
                "extraction": latency(merged(counters["extraction_duration_seconds"])),
                "request": latency(merged(counters["request_duration_seconds"], JOB_ROUTES)),
            },
            "workers": self.workers(facts),
            "breakers": self.breakers(facts),
        })
        return body

    def workers(self, facts: Facts) -> list[dict]:
        out = []
        for name, worker in sorted(workers_view(facts, self.settings).items()):
            beat = worker.heartbeat or {}
            if not worker.live(self.settings):
                continue  # a consumer name left in the group by a child long gone
            started = beat.get("job_started_at")
            job_age = (facts.now - float(started) if started
                       else worker.job_s)
            out.append({
                "consumer": name, "host": name.rpartition("-")[0] or name,
                "pid": beat.get("pid"), "slot": beat.get("slot"),
                "busy": worker.busy, "job_id": beat.get("job_id"),
                "job_age_s": None if job_age is None else round(job_age, 1),
                "rss_mb": beat.get("rss_mb"), "jobs": beat.get("jobs"),
                "heartbeat_age_s": round(facts.now - float(beat["at"]), 1)
                if beat.get("at") else None})
        return out

    def breakers(self, facts: Facts) -> list[dict]:
        recovery = self.settings.circuit_breaker_recovery_timeout
        out = []
        for family, raw in sorted(facts.breakers.items()):
            state = raw.get("state") or "closed"
            opened_at = float(raw["opened_at"]) if raw.get("opened_at") else None
            out.append({
                "family": family, "state": state, "opened_at": opened_at,
                "retry_at": opened_at + recovery if state == "open" and opened_at else None,
                "consecutive_failures": int(raw.get("consecutive_failures") or 0),
                "times_opened": int(raw.get("times_opened") or 0)})
        return out


CONSOLE = web.AppKey("console", Console)


async def console_route(request: web.Request) -> web.Response:
    return json_response(await request.app[CONSOLE].overview())


async def console_context(app: web.Application) -> AsyncIterator[None]:
    console = app[CONSOLE]
    tasks = [asyncio.create_task(console.sampling())]
    yield
    # An event, as the monitor's task stops (redis-py may swallow a cancellation).
    console.stopping.set()
    await asyncio.wait(tasks, timeout=2.0)
    for task in tasks:
        task.cancel()
