"""How fast the result cache answers: a stack of its own, one document extracted once, then
the same bytes uploaded again and again over one keep-alive connection, unloaded.

    python -m bench.cache_hit [--repeat 300] [--document textract-tests/pdf/raw_text.pdf]

Prints the p50 / p90 / p99 of a hit as the client sees it (upload to answer) and as the
api logs it (its `duration_ms`), and the same for a fresh extraction (?cache=0) beside it.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import statistics
import time

import orjson

from devtools.corpus import CORPUS
from devtools.multipart import multipart_body
from devtools.stack import Stack


def _percentiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {statistics.median(values):.2f} ms  p90 {q[89]:.2f} ms  p99 {q[98]:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--document", default="textract-tests/pdf/raw_text.pdf")
    args = parser.parse_args()
    path = CORPUS / args.document
    body, content_type = multipart_body(path.name, path.read_bytes())
    stack = Stack(env={"WORKER_PROCESSES": "1", "RESULT_CACHE_TTL": "600"}).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
        headers = {"X-API-Key": stack.api_key, "Content-Type": content_type}

        def upload(query: str) -> tuple[float, dict]:
            started = time.perf_counter()
            conn.request("POST", f"/v1/jobs{query}", body=body, headers=headers)
            job = orjson.loads(conn.getresponse().read())
            return (time.perf_counter() - started) * 1000, job

        _, first = upload("?wait=60")
        assert first["state"] == "done", first
        hits = []
        for _ in range(args.repeat):
            ms, job = upload("")
            assert job["cached"] is True, job
            hits.append(ms)
        fresh = [upload("?wait=60&cache=0")[0] for _ in range(max(10, args.repeat // 20))]
        logged = [e["duration_ms"] for e in stack.log_events("api")
                  if e.get("event") == "http.request" and e.get("route") == "/v1/jobs"]
        server_hits = logged[1:1 + args.repeat]
        print(f"{path.name}: {path.stat().st_size} bytes, {args.repeat} hits, "
              f"{len(fresh)} fresh extractions")
        print(f"cache hit, client:       {_percentiles(hits)}")
        print(f"cache hit, api logged:   {_percentiles(server_hits)}")
        print(f"fresh (?cache=0), client: {_percentiles(fresh)}")
    finally:
        stack.stop()
        shutil.rmtree(stack.root, ignore_errors=True)


if __name__ == "__main__":
    main()
