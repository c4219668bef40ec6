"""The /metrics half: the counter hashes and the health facts read back into one snapshot,
answered as JSON or, through a custom prometheus_client collector, in the Prometheus /
OpenMetrics text format. The recorders that fill the hashes are `daemon.metrics`.
"""

from __future__ import annotations

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

from daemon.health.checks import EXIT_CODES, Check
from daemon.health.facts import Facts, decode_hash
from daemon.metrics import EXTRACT_BUCKETS, REQUEST_BUCKETS
from daemon.store import (
    EXTRACT_SECONDS,
    REQUEST_SECONDS,
    REQUESTS,
    VOLUME,
)

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
        decode_hash(r) for r in replies)
    by_route = []
    for name, count in sorted(requests.items()):
        method, _, rest = name.partition("|")
        route, _, status = rest.rpartition("|")
        by_route.append({"route": route, "method": method, "status": int(status),
                         "count": int(count)})
    bytes_in: dict[str, int] = {}
    chars_out: dict[str, int] = {}
    for name, value in volume.items():
        kind, _, fmt = name.partition("|")
        (bytes_in if kind == "bytes_in" else chars_out)[fmt] = int(value)
    return {"requests": by_route,
            "request_duration_seconds": _histograms(request_seconds, REQUEST_BUCKETS),
            "extraction_duration_seconds": _histograms(extract_seconds, EXTRACT_BUCKETS),
            "bytes_in": bytes_in, "chars_out": chars_out}


# --- the snapshot ---------------------------------------------------------------------------
def build_snapshot(checks: dict[str, Check], facts: Facts, counters: dict | None,
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
                            if k.startswith("failed:")},
                 "cache": {"hits": jobs.get("cache_hits", 0),
                           "misses": jobs.get("cache_misses", 0)}} if up else None,
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
                     labels=["component"], rows=[([c], EXIT_CODES[st])
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
        yield _counter(f"{p}_result_cache_hits", "Uploads served a done job's result",
                       [], [([], jobs["cache"]["hits"])])
        yield _counter(f"{p}_result_cache_misses", "Uploads the result cache could not serve",
                       [], [([], jobs["cache"]["misses"])])
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
