"""Metrics: buffered in each process, added up in Redis, shown as JSON and Prometheus text.

Real processes throughout: a redis-server, the api with its monitoring routes
(`tests.test_health.MonitoredApi`), and whole stacks whose two pool children extract
corpus documents. The Prometheus text is read back with prometheus_client's own parsers.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from daemon import metrics
from daemon.store import RESTARTS_BY_MINUTE, RESTARTS_BY_MINUTE_TTL, job_key
from devtools.stack import wait_for
from tests.conftest import CORPUS, RedisServer
from tests.fakes import request, wait_final
from tests.test_health import CALM_CPU, MonitoredApi, cli, monitored

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
# A slow .doc (soffice) first, so the second child surely takes some of the others.
DOCUMENTS = ["doc/standardized_text.doc", "pdf/standardized_text.pdf", "pdf/raw_text.pdf",
             "docx/standardized_text.docx", "csv/standardized_text.csv",
             "html/standardized_text.html"]


def samples(text: str, parser=text_string_to_metric_families) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parser(text) for s in family.samples}


def command_calls(client: redis.Redis, *commands: str) -> dict[str, int]:
    stats = client.info("commandstats")
    return {c: stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in commands}


def test_the_api_counts_requests_in_memory_and_adds_them_to_redis_once_a_second(
        redis_server, tmp_path):
    env = {**os.environ, "REDIS_URL": redis_server.url, "TEXTRACTD_HOME": str(tmp_path),
           "API_KEY": "metrics-test-key", "WORKER_PROCESSES": "1", **CALM_CPU}
    client = redis_server.client()
    with MonitoredApi(env, tmp_path / "api.log") as api:
        before = command_calls(client, "hincrby", "hincrbyfloat", "exec")
        started = time.monotonic()
        statuses = [api.get("/v1/formats")[0] for _ in range(60)]
        unauthorised = api.get("/v1/formats", key=False)[0]
        took = time.monotonic() - started

        def counted() -> dict | None:
            found = {(r["route"], r["method"], r["status"]): r["count"]
                     for r in json.loads(api.get("/metrics")[2])["requests"]}
            return found if found.get(("/v1/formats", "GET", 200)) == 60 else None

        found = wait_for(counted, 10, "the 60 requests in /metrics")
        after = command_calls(client, "hincrby", "hincrbyfloat", "exec")
        snapshot = json.loads(api.get("/metrics")[2])
        prometheus = samples(api.get("/metrics?format=prometheus")[2].decode())

    assert statuses == [200] * 60 and unauthorised == 401
    assert found[("/v1/formats", "GET", 401)] == 1
    hincrby = after["hincrby"] - before["hincrby"]
    flushes = after["exec"] - before["exec"]
    # Per request it would be 3 HINCRBY each (180+); buffered it is a few per flush.
    assert hincrby < 60, (hincrby, flushes)
    assert flushes <= took + 12  # one a second, plus the ones /metrics makes itself
    hist = snapshot["request_duration_seconds"]["/v1/formats"]
    assert hist["count"] == 61 and hist["buckets"]["+Inf"] == 61
    assert list(hist["buckets"].values()) == sorted(hist["buckets"].values())
    assert prometheus[("textractd_http_requests_total",
                       (("method", "GET"), ("route", "/v1/formats"), ("status", "200")))] == 60
    assert prometheus[("textractd_http_request_duration_seconds_count",
                       (("route", "/v1/formats"),))] == 61
    print(f"\n61 requests in {took:.2f} s reached Redis with {hincrby} HINCRBY in "
          f"{flushes} MULTI/EXEC round trips")


def test_job_counters_and_extraction_metrics_add_up_across_both_children(make_stack):
    # The result cache on (test stacks default to off), so its misses are counted too.
    stack = make_stack(env={"WORKER_PROCESSES": "2", "RESULT_CACHE_TTL": "600"})
    with monitored(stack) as api:
        before = json.loads(api.get("/metrics")[2])
        paths = [CORPUS / "textract-tests" / d for d in DOCUMENTS]

        def run(path: Path) -> dict:
            status, body, _ = request(api, "POST", f"/v1/jobs?filename={path.name}",
                                      path.read_bytes())
            assert status == 202, body
            return wait_final(api, body["id"], 60)

        with ThreadPoolExecutor(len(paths)) as pool:
            jobs = list(pool.map(run, paths))

        def flushed() -> dict | None:
            now = json.loads(api.get("/metrics")[2])
            counts = sum(h["count"] for h in now["extraction"]["duration_seconds"].values())
            return now if now["jobs"]["done"] == 6 and counts == 6 else None

        after = wait_for(flushed, 15, "the children's counts in /metrics")
        text = api.get("/metrics", headers={"Accept": "text/plain; version=0.0.4"})[2].decode()
        om_status, om_headers, om_body = api.get("/metrics", headers={
            "Accept": PROMETHEUS_ACCEPT})
        _status, status = api.json("/status")
    with stack.redis() as r:
        consumers = {r.hget(job_key(j["id"]), "consumer").decode() for j in jobs}

    assert [j["state"] for j in jobs] == ["done"] * 6
    assert len(consumers) == 2  # both children worked; the counters add them up
    assert before["jobs"] == {"submitted": 0, "finished": 0, "done": 0, "failed": {},
                              "cache": {"hits": 0, "misses": 0}}
    # Six different documents: each looked in the result cache once and missed.
    assert after["jobs"] == {"submitted": 6, "finished": 6, "done": 6, "failed": {},
                             "cache": {"hits": 0, "misses": 6}}
    by_format: dict[str, list[dict]] = {}
    for path, job in zip(paths, jobs, strict=True):
        by_format.setdefault(job["format"], []).append({"bytes": path.stat().st_size,
                                                        "chars": job["chars"]})
    extraction = after["extraction"]
    assert {f: h["count"] for f, h in extraction["duration_seconds"].items()} == {
        f: len(v) for f, v in by_format.items()}
    assert extraction["bytes_in"] == {f: sum(x["bytes"] for x in v)
                                      for f, v in by_format.items()}
    assert extraction["chars_out"] == {f: sum(x["chars"] for x in v)
                                       for f, v in by_format.items()}
    posted = {r["status"]: r["count"] for r in after["requests"]
              if r["route"] == "/v1/jobs" and r["method"] == "POST"}
    assert posted == {202: 6}

    prom = samples(text)
    assert prom[("textractd_jobs_done_total", ())] == 6
    assert prom[("textractd_jobs_submitted_total", ())] == 6
    assert prom[("textractd_extraction_duration_seconds_count", (("format", "pdf"),))] == 2
    assert prom[("textractd_extraction_duration_seconds_bucket",
                 (("format", "doc"), ("le", "+Inf")))] == 1
    assert prom[("textractd_extracted_bytes_total", (("format", "pdf"),))] == sum(
        x["bytes"] for x in by_format["pdf"])
    assert prom[("textractd_workers_live", ())] == 2
    assert prom[("textractd_redis_up", ())] == 1
    assert prom[("textractd_system_memory_percent", ())] > 0
    assert om_status == 200
    assert om_headers["Content-Type"].startswith("application/openmetrics-text")
    om = samples(om_body.decode(), openmetrics_families)
    assert om[("textractd_jobs_done_total", ())] == 6
    assert status["jobs"]["last_minute"]["done"] == 6
    assert status["jobs"]["total"] == {"submitted": 6, "done": 6, "failed": 0}
    print(f"\n6 jobs over {len(consumers)} children; extraction seconds by format: "
          f"{ {f: h['sum'] for f, h in extraction['duration_seconds'].items()} }")


def test_job_metrics_keep_their_counts_through_a_redis_outage(redis_server):
    client = redis_server.client()
    buffer = metrics.JobMetrics()
    buffer.record_job("pdf", 0.2, 1000, 50)
    buffer.record_job("pdf", 3.0, 2000, 70)
    assert buffer.flush_due(client) is False  # not a second since it was made
    buffer.flush(client)
    buffer.record_job("docx", 0.01, 300, 10)
    redis_server.stop()
    with pytest.raises(redis.ConnectionError):
        buffer.flush(redis.Redis.from_url(redis_server.url, socket_timeout=1))
    assert buffer  # still held for the next flush
    restarted = RedisServer(redis_server.root).start()  # same folder: the AOF is read back
    try:
        buffer.flush(restarted.client())
        raw = restarted.client().hgetall(metrics.EXTRACT_SECONDS)
        volume = restarted.client().hgetall(metrics.VOLUME)
    finally:
        restarted.stop()

    fields = {k.decode(): float(v) for k, v in raw.items()}
    assert fields["pdf|0.25"] == 1 and fields["pdf|5"] == 1 and fields["pdf|count"] == 2
    assert fields["pdf|sum"] == pytest.approx(3.2)
    assert fields["docx|0.05"] == 1
    assert {k.decode(): int(v) for k, v in volume.items()} == {
        "bytes_in|pdf": 3000, "chars_out|pdf": 120, "bytes_in|docx": 300,
        "chars_out|docx": 10}


def test_a_crash_restart_counts_in_total_and_in_its_minute_and_makes_workers_warn(
        redis_server, tmp_path):
    client = redis_server.client()
    metrics.record_restart(client, "crashed")
    metrics.record_restart(client, "recycle-jobs")
    env = {**os.environ, "REDIS_URL": redis_server.url, "TEXTRACTD_HOME": str(tmp_path),
           "WORKER_PROCESSES": "1", "ROLE": "all"}
    result = json.loads(cli(env, "workers", "--json").stdout)["checks"]["workers"]
    minute_keys = client.keys(f"{RESTARTS_BY_MINUTE}:*")

    assert result["figures"]["restarts"] == {"crashed": 1, "recycle-jobs": 1}
    assert result["figures"]["restarts_last_15m"] == {"crashed": 1, "recycle-jobs": 1}
    assert "children died in the last 15 min: crashed x1" in result["message"]
    assert "recycle" not in result["message"]  # a recycled child is the plan, not news
    assert minute_keys  # one, or two if the minute turned between the two restarts
    assert all(0 < client.ttl(k) <= RESTARTS_BY_MINUTE_TTL for k in minute_keys)
