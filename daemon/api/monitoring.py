"""The api's monitoring routes: /health/detailed, /status, /metrics, and the request recorder.

`setup_monitoring` adds them to the app `daemon.api.app.create_app` builds. A background
task flushes the request counts to Redis once a second, samples the CPU times (the cpu
check's CPU_WINDOW) and samples the job counters, so /status can say how many jobs
ended in the last minute without any per-minute keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import structlog
from aiohttp import web

from daemon import __version__, metrics
from daemon.api import exposition
from daemon.api.keys import METRICS_HOOK
from daemon.api.middleware import json_response
from daemon.config import Settings
from daemon.connection import REDIS_DOWN
from daemon.health.checks import CRITICAL, OK, UNKNOWN, WARNING, Check, worst
from daemon.health.facts import Facts, failed_total, int_hash
from daemon.health.host import CpuWindow
from daemon.health.rendering import problem_line
from daemon.health.runner import COMPONENTS, run_checks_async
from daemon.store import JOB_COUNTERS, AsyncJobStore

log = structlog.get_logger()

SAMPLE_EVERY = 5.0  # job counters, for "the last minute"
WINDOW = 60.0
HEALTH_STATUS = {OK: "pass", WARNING: "warn", UNKNOWN: "warn", CRITICAL: "fail"}
COMPONENT_TYPES = {"redis": "datastore", "disk": "system", "memory": "system", "cpu": "system",
                   "tempfiles": "system", "supervisor": "system"}
# /status judges only what Redis says: cheap enough to poll often.
STATUS_COMPONENTS = ["redis", "workers", "queue", "breaker", "chores"]


class Monitor:
    """Per-api-process monitoring state: the request buffer and the samples."""

    def __init__(self, settings: Settings, store: AsyncJobStore) -> None:
        self.settings = settings
        self.store = store
        self.started = time.time()
        self.requests = metrics.RequestMetrics()
        self.cpu = CpuWindow(settings.cpu_window)  # the host's CPU share over CPU_WINDOW
        # (monotonic time, done, failed) every SAMPLE_EVERY seconds, a little over a window
        self.samples: deque[tuple[float, int, int]] = deque(
            maxlen=int(WINDOW / SAMPLE_EVERY) + 3)
        self.stopping = asyncio.Event()

    def client(self, _app: web.Application | None = None):
        return self.store.client

    def uptime(self, _app: web.Application | None = None) -> float:
        return time.time() - self.started

    async def run(self, app: web.Application) -> None:
        last_sample = -SAMPLE_EVERY  # the first sample at once: "last minute" counts from it
        while not self.stopping.is_set():
            try:
                if time.monotonic() - last_sample >= SAMPLE_EVERY:
                    last_sample = time.monotonic()
                    await self.sample(app)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), metrics.FLUSH_EVERY)
                self.cpu.sample()
                await self.requests.flush_async(self.client(app))
            except REDIS_DOWN as exc:
                log.debug("metrics.flush_failed", error=str(exc))  # kept for the next try

    async def sample(self, app: web.Application) -> None:
        jobs = int_hash(await self.client(app).hgetall(JOB_COUNTERS))
        failed = failed_total(jobs)
        self.samples.append((time.monotonic(), jobs.get("done", 0), failed))

    def last_minute(self, jobs: dict[str, int]) -> dict:
        """Jobs ended since the sample nearest a minute ago (a shorter window after start)."""
        now = time.monotonic()
        failed = failed_total(jobs)
        base = None
        for sample in self.samples:
            if sample[0] <= now - WINDOW or base is None:
                base = sample
        if base is None:
            return {"done": 0, "failed": 0, "window_s": 0.0}
        return {"done": max(0, jobs.get("done", 0) - base[1]),
                "failed": max(0, failed - base[2]), "window_s": round(now - base[0], 1)}

    async def checks(self, app: web.Application, components: list[str]
                     ) -> tuple[list[Check], Facts]:
        return await run_checks_async(self.settings, self.client(app), components,
                                      self.cpu.reading())

    async def snapshot(self, app: web.Application) -> dict:
        client = self.client(app)
        with contextlib.suppress(*REDIS_DOWN):
            await self.requests.flush_async(client)  # this process's counts up to now
        checks, facts = await self.checks(app, list(COMPONENTS))
        counters = quarantined = None
        if not facts.error:
            try:
                async with client.pipeline(transaction=False) as pipe:
                    exposition.queue_reads(pipe)
                    counters = exposition.parse_reads(await pipe.execute())
                quarantined = await self.store.quarantine_count()
            except REDIS_DOWN as exc:
                facts.error = str(exc)
        snapshot = exposition.build_snapshot({c.name: c for c in checks}, facts, counters,
                                             version=__version__, uptime_s=self.uptime(app))
        if quarantined is not None and not facts.error:
            snapshot["quarantined_documents"] = quarantined
        return snapshot


MONITOR = web.AppKey("monitor", Monitor)


# --- routes ---------------------------------------------------------------------------------
async def health_detailed(request: web.Request) -> web.Response:
    """Every component in application/health+json; 503 when one fails."""
    monitor = request.app[MONITOR]
    checks, _facts = await monitor.checks(request.app, list(COMPONENTS))
    overall = HEALTH_STATUS[worst([c.status for c in checks])]
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    body = {
        "status": overall,
        "version": __version__,
        "serviceId": "textractd",
        "description": "textractd document text extraction",
        "checks": {c.name: [{"componentType": COMPONENT_TYPES.get(c.name, "component"),
                             "status": HEALTH_STATUS[c.status], "output": c.message,
                             "time": now, "figures": c.figures}] for c in checks},
    }
    problems = [problem_line(c) for c in checks if c.status != OK]
    if problems:
        body["output"] = "; ".join(problems)
    return json_response(body, status=503 if overall == "fail" else 200,
                         content_type="application/health+json")


async def status(request: web.Request) -> web.Response:
    """A short overview: uptime, queue, workers, breakers, jobs in the last minute."""
    app = request.app
    monitor = app[MONITOR]
    checks, facts = await monitor.checks(app, STATUS_COMPONENTS)
    by_name = {c.name: c for c in checks}
    overall = HEALTH_STATUS[worst([c.status for c in checks])]
    body: dict = {"status": overall, "version": __version__,
                  "uptime_s": round(monitor.uptime(app), 3),
                  "redis": {"connected": not facts.error, "error": facts.error or None}}
    if not facts.error:
        w, q = by_name["workers"].figures, by_name["queue"].figures
        jobs = facts.jobs
        body.update({
            "queue": {k: q[k] for k in ("depth", "pending", "lag", "dead_letters", "deferred",
                                        "oldest_pending_age_s")},
            "workers": {"live": w["cluster_live"], "busy": w["busy"], "idle": w["idle"],
                        "expected_here": w["expected"]},
            "breakers": by_name["breaker"].figures["states"],
            "quarantine": {"documents": await monitor.store.quarantine_count()},
            "jobs": {"last_minute": monitor.last_minute(jobs),
                     "total": {"submitted": jobs.get("submitted", 0),
                               "done": jobs.get("done", 0),
                               "failed": failed_total(jobs)}},
        })
    body["problems"] = [problem_line(c) for c in checks if c.status != OK]
    return json_response(body, status=503 if overall == "fail" else 200)


async def metrics_route(request: web.Request) -> web.Response:
    """JSON by default; Prometheus or OpenMetrics text when the client asks for it."""
    snapshot = await request.app[MONITOR].snapshot(request.app)
    accept = request.headers.get("Accept", "")
    fmt = request.query.get("format")
    if not exposition.wants_prometheus(accept, fmt):
        return json_response(snapshot)
    if fmt == "openmetrics":
        accept = "application/openmetrics-text"
    elif fmt:
        accept = "text/plain; version=0.0.4"
    body, content_type = exposition.render_prometheus(snapshot, accept)
    return web.Response(body=body, headers={"Content-Type": content_type})


# --- wiring ---------------------------------------------------------------------------------
async def _monitor_context(app: web.Application) -> AsyncIterator[None]:
    monitor = app[MONITOR]
    task = asyncio.create_task(monitor.run(app))
    yield
    # An event, not task.cancel(): redis-py 8.1's asyncio client can swallow a
    # cancellation that lands inside a command, and the task would then run on. Nothing
    # here waits without a bound, so a stop is never held up.
    monitor.stopping.set()
    await asyncio.wait([task], timeout=2.0)
    task.cancel()
    # The last second of counts, if Redis is there to take them.
    last = asyncio.create_task(monitor.requests.flush_async(monitor.client(app)))
    await asyncio.wait([last], timeout=2.0)
    if last.done() and not last.cancelled() and last.exception() is not None:
        log.debug("metrics.final_flush_failed", error=str(last.exception()))
    elif not last.done():
        last.cancel()


def setup_monitoring(app: web.Application, settings: Settings, store: AsyncJobStore) -> None:
    """Add the monitoring routes and the request recorder to an app from create_app."""
    monitor = Monitor(settings, store)
    app[MONITOR] = monitor
    app[METRICS_HOOK] = monitor.requests
    # After the api's own context, so the Redis client exists first and closes last.
    app.cleanup_ctx.append(_monitor_context)
    app.router.add_get("/health/detailed", health_detailed)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics_route)
