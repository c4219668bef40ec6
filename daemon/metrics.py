"""Counters that add up across every process and host, kept in Redis, and their exposition.

Each process buffers its counts in memory and adds them to Redis hashes with one MULTI
round trip at most once a second: the api through `RequestMetrics` (a background task
flushes it), the pool children through `JobMetrics`. `/metrics` reads the hashes plus the
health facts into one snapshot, answered as JSON or, through a custom prometheus_client
collector, in the Prometheus / OpenMetrics text format.

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
from collections.abc import Iterable, Iterator

import redis
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from daemon import health
from daemon.store import (
    EXTRACT_SECONDS,
    JOB_COUNTERS,
    REQUEST_SECONDS,
    REQUESTS,
    RESTARTS,
    VOLUME,
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
        self.floats[key, f"{label}|sum"] += value

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
    def _queue(pipe: redis.client.Pipeline, taken: tuple[Counter, Counter]) -> None:
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
    key = health.restarts_minute_key(int((now or time.time()) // 60))
    with client.pipeline(transaction=True) as pipe:
        pipe.hincrby(RESTARTS, reason, 1)
        pipe.hincrby(key, reason, 1)
        pipe.expire(key, health.RESTARTS_BY_MINUTE_TTL)
        pipe.execute()


# --- reading the hashes back --------------------------------------------------------------
COUNTER_HASHES = (REQUESTS, REQUEST_SECONDS, EXTRACT_SECONDS, VOLUME)


def queue_reads(pipe: redis.client.Pipeline) -> None:
    for key in COUNTER_HASHES:
        pipe.hgetall(key)


def _histograms(fields: dict[str, str], buckets: tuple[float, ...]) -> dict[str, dict]:
    """`label|le` counts -> {label: {"buckets": {le: cumulative}, "count", "sum"}}."""
    raw: dict[str, dict[str, float]] = {}
    for name, value in fields.items():
        label, _, part = name.rpartition("|")
        raw.setdefault(label, {})[part] = float(value)
    out = {}
    for label, parts in sorted(raw.items()):
        running, cumulative = 0, {}
        for le in [f"{b:g}" for b in buckets] + ["+Inf"]:
            running += int(parts.get(le, 0))
            cumulative[le] = running
        out[label] = {"buckets": cumulative, "count": int(parts.get("count", running)),
                      "sum": round(parts.get("sum", 0.0), 6)}
    return out


def parse_reads(replies: list) -> dict:
    requests, request_seconds, extract_seconds, volume = (
        health.decode_hash(r) for r in replies)
    by_route = []
    for name, count in sorted(requests.items()):
        method, _, rest = name.partition("|")
        route, _, status = rest.rpartition("|")
        by_route.append({"route": route, "method": method, "status": int(status),
                         "count": int(count)})
    bytes_in, chars_out = {}, {}
    for name, value in volume.items():
        kind, _, fmt = name.partition("|")
        (bytes_in if kind == "bytes_in" else chars_out)[fmt] = int(value)
    return {"requests": by_route,
            "request_duration_seconds": _histograms(request_seconds, REQUEST_BUCKETS),
            "extraction_duration_seconds": _histograms(extract_seconds, EXTRACT_BUCKETS),
            "bytes_in": bytes_in, "chars_out": chars_out}


# --- the snapshot ---------------------------------------------------------------------------
def build_snapshot(checks: dict[str, health.Check], facts: health.Facts, counters: dict | None,
                   *, version: str, uptime_s: float) -> dict:
    """Everything /metrics shows, JSON-ready; the Prometheus text is rendered from it."""
    f = {name: c.figures for name, c in checks.items()}
    up = not facts.error
    jobs = facts.jobs
    counters = counters or {}
    queue = f.get("queue", {})
    workers = f.get("workers", {})
    breaker = f.get("breaker", {}).get("families", {})
    disk = f.get("disk", {})
    return {
        "version": version,
        "uptime_s": round(uptime_s, 1),
        "health": {name: c.status for name, c in checks.items()},
        "requests": counters.get("requests", []),
        "request_duration_seconds": counters.get("request_duration_seconds", {}),
        "jobs": {"submitted": jobs.get("submitted", 0), "finished": jobs.get("finished", 0),
                 "done": jobs.get("done", 0),
                 "failed": {k.removeprefix("failed:"): v for k, v in sorted(jobs.items())
                            if k.startswith("failed:")}} if up else None,
        "extraction": {"duration_seconds": counters.get("extraction_duration_seconds", {}),
                       "bytes_in": counters.get("bytes_in", {}),
                       "chars_out": counters.get("chars_out", {})},
        "queue": {k: queue.get(k) for k in ("depth", "pending", "lag", "stream_length",
                                            "oldest_pending_age_s", "oldest_waiting_age_s",
                                            "dead_letters", "deferred")} if up else None,
        "breakers": breaker if up else None,
        "workers": {k: workers.get(k) for k in ("expected", "live", "cluster_live", "busy",
                                                "idle", "restarts")} if up else None,
        "system": {"cpu_percent": f.get("cpu", {}).get("percent"),
                   "load_average": f.get("cpu", {}).get("load_average"),
                   "memory_percent": f.get("memory", {}).get("percent"),
                   "disk_percent": {k: v["percent"] for k, v in disk.items()}},
        "temp_files": {"files": f.get("tempfiles", {}).get("files"),
                       "bytes": f.get("tempfiles", {}).get("bytes")},
        "redis": {"connected": up, **({k: f["redis"].get(k) for k in (
            "latency_ms", "used_memory", "maxmemory", "connected_clients", "uptime_s",
            "version")} if up and "redis" in f else {})},
    }


# --- Prometheus ----------------------------------------------------------------------------
def _counter(name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], float]]
             ) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, number in rows:
        family.add_metric(values, number)
    return family


def _gauge(name: str, doc: str, value: float | None = None, labels: list[str] | None = None,
           rows: Iterable[tuple[list[str], float]] = ()) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    if value is not None:
        family.add_metric([], value)
    for values, number in rows:
        family.add_metric(values, number)
    return family


def _histogram(name: str, doc: str, label: str, hists: dict[str, dict]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for value, h in hists.items():
        family.add_metric([value], list(h["buckets"].items()), h["sum"])
    return family


class SnapshotCollector:
    """A prometheus_client collector over one snapshot: the library writes the format."""

    def __init__(self, snapshot: dict) -> None:
        self.s = snapshot

    def collect(self) -> Iterator[Metric]:
        s, p = self.s, "textractd"
        yield _gauge(f"{p}_up", "1: the api answered this scrape", 1)
        yield _gauge(f"{p}_uptime_seconds", "Seconds since this api process started",
                     s["uptime_s"])
        yield _gauge(f"{p}_build_info", "The running version", labels=["version"],
                     rows=[([s["version"]], 1)])
        yield _gauge(f"{p}_health_status", "Each check: 0 ok, 1 warning, 2 critical, 3 unknown",
                     labels=["component"], rows=[([c], health.EXIT_CODES[st])
                                                 for c, st in s["health"].items()])
        yield _counter(f"{p}_http_requests", "HTTP requests by route, method and status",
                       ["route", "method", "status"],
                       [([r["route"], r["method"], str(r["status"])], r["count"])
                        for r in s["requests"]])
        yield _histogram(f"{p}_http_request_duration_seconds", "HTTP request duration",
                         "route", s["request_duration_seconds"])
        ext = s["extraction"]
        yield _histogram(f"{p}_extraction_duration_seconds",
                         "Time to extract one document, by format", "format",
                         ext["duration_seconds"])
        yield _counter(f"{p}_extracted_bytes", "Document bytes extracted, by format",
                       ["format"], [([k], v) for k, v in sorted(ext["bytes_in"].items())])
        yield _counter(f"{p}_extracted_chars", "Characters of text extracted, by format",
                       ["format"], [([k], v) for k, v in sorted(ext["chars_out"].items())])
        redis_info = s["redis"]
        yield _gauge(f"{p}_redis_up", "1 when Redis answered", int(redis_info["connected"]))
        yield from self._system()
        if not redis_info["connected"]:
            return  # the counters live in Redis: none rather than zeros that look real
        yield _gauge(f"{p}_redis_memory_used_bytes", "Redis used_memory",
                     redis_info.get("used_memory"))
        yield _gauge(f"{p}_redis_maxmemory_bytes", "Redis maxmemory (0: no limit)",
                     redis_info.get("maxmemory"))
        yield _gauge(f"{p}_redis_connected_clients", "Redis connected_clients",
                     redis_info.get("connected_clients"))
        yield _gauge(f"{p}_redis_latency_seconds", "PING round trip",
                     (redis_info.get("latency_ms") or 0) / 1000)
        jobs = s["jobs"]
        yield _counter(f"{p}_jobs_submitted", "Jobs accepted by the api", [],
                       [([], jobs["submitted"])])
        yield _counter(f"{p}_jobs_done", "Jobs finished with their text", [],
                       [([], jobs["done"])])
        yield _counter(f"{p}_jobs_failed", "Jobs failed, by error code", ["code"],
                       [([k], v) for k, v in jobs["failed"].items()])
        yield from self._queue()
        yield from self._breakers()
        w = s["workers"]
        yield _gauge(f"{p}_workers_live", "Pool children alive (all hosts)", w["cluster_live"])
        yield _gauge(f"{p}_workers_busy", "Pool children running a job (all hosts)", w["busy"])
        yield _counter(f"{p}_worker_restarts", "Pool children that exited, by reason",
                       ["reason"], [([k], v) for k, v in sorted(w["restarts"].items())])

    def _system(self) -> Iterator[Metric]:
        p, sys_, tmp = "textractd", self.s["system"], self.s["temp_files"]
        if sys_["cpu_percent"] is not None:
            yield _gauge(f"{p}_system_cpu_percent", "CPU busy, whole host", sys_["cpu_percent"])
        if sys_["memory_percent"] is not None:
            yield _gauge(f"{p}_system_memory_percent", "Memory used, whole host",
                         sys_["memory_percent"])
        yield _gauge(f"{p}_system_disk_percent", "Disk used where var/ and logs/ live",
                     labels=["path"], rows=[([k], v) for k, v in sys_["disk_percent"].items()])
        if sys_["load_average"]:
            yield _gauge(f"{p}_system_load_average", "Load average", labels=["period"],
                         rows=zip([["1m"], ["5m"], ["15m"]], sys_["load_average"], strict=True))
        if tmp["files"] is not None:
            yield _gauge(f"{p}_temp_files", "Files in the spool", tmp["files"])
            yield _gauge(f"{p}_temp_files_bytes", "Bytes in the spool", tmp["bytes"])

    def _queue(self) -> Iterator[Metric]:
        p, q = "textractd", self.s["queue"]
        docs = {"depth": "Jobs accepted and not finished", "pending": "Entries delivered, "
                "not acknowledged", "lag": "Entries no consumer has read yet",
                "stream_length": "Entries in the jobs stream",
                "dead_letters": "Entries in the dead-letter stream",
                "deferred": "Jobs waiting for a retry time or a breaker"}
        for key, doc in docs.items():
            yield _gauge(f"{p}_queue_{key}", doc, q[key] or 0)
        yield _gauge(f"{p}_queue_oldest_pending_age_seconds", "Age of the oldest pending entry",
                     q["oldest_pending_age_s"])
        yield _gauge(f"{p}_queue_oldest_waiting_age_seconds", "Age of the oldest unread entry",
                     q["oldest_waiting_age_s"])

    def _breakers(self) -> Iterator[Metric]:
        p, b = "textractd", self.s["breakers"]
        states = ("closed", "open", "half_open")
        yield _gauge(f"{p}_breaker_state", "1 for each family's current state", labels=[
            "family", "state"], rows=[([f, st], int(v["state"] == st))
                                      for f, v in b.items() for st in states])
        yield _gauge(f"{p}_breaker_consecutive_failures", "Failures in a row, by family",
                     labels=["family"], rows=[([f], v["consecutive_failures"])
                                              for f, v in b.items()])
        yield _counter(f"{p}_breaker_failures", "Machinery failures counted by the breaker",
                       ["family"], [([f], v["total_failures"]) for f, v in b.items()])
        yield _counter(f"{p}_breaker_opened", "Times the breaker opened", ["family"],
                       [([f], v["times_opened"]) for f, v in b.items()])


def render_prometheus(snapshot: dict, accept: str) -> tuple[bytes, str]:
    """The snapshot in the format `accept` asks for (OpenMetrics or text 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    encoder, content_type = choose_encoder(accept or "text/plain; version=0.0.4")
    return encoder(registry), content_type


def wants_prometheus(accept: str, fmt: str | None) -> bool:
    if fmt:
        return fmt.lower() in ("prometheus", "openmetrics", "text")
    accept = accept.lower()
    return "application/openmetrics-text" in accept or "text/plain" in accept
