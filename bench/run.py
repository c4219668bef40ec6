"""The benchmark: the service against textract itself, in one run, on this machine.

`python -m bench.run` (or `scripts/bench`) starts its own stack as the tests do and
measures, in each run:
1. ceiling: the corpus extracted with `textract.process` in a `multiprocessing.Pool` of
   WORKER_PROCESSES, several passes, no HTTP, no Redis; docs/s;
2. corpus: the same documents over HTTP, 8 in flight (`POST /v1/jobs?wait=60`);
3. tiny: uploads of one 1 KB .txt, 8 in flight, against the same document in the pool;
4. latency: one tiny job at a time, upload to result;
5. memory: the api's peak RSS while 32 clients upload 16 MB each, and each child's RSS
   before and after 1,000 jobs (recycling is switched off so that growth would show).
Figures are medians over `--runs`; every ratio is taken within one run, since the
machine is shared. The workload is fixed (WORKLOAD) so that runs on different days
compare; `--quick` is a small one for the smoke test. JSON goes to var/bench/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import orjson
import psutil
import textract

from bench.loadgen import MIB, measure_upload_rss
from daemon.config import ROOT
from daemon.pool.child import tree_rss_mb
from daemon.store import DEPTH, heartbeat_key, job_key
from devtools.corpus import CORPUS, corpus_documents
from devtools.multipart import multipart_body
from devtools.stack import Stack, free_port, wait_for

OUT_DIR = ROOT / "var" / "bench"
# Scanned: asked for with OCR in both arms, as tests/test_corpus.py does.
METHODS = {"textract-tests/pdf/ocr_text.pdf": "tesseract"}
# A few cheap formats (each through a different parser) for --quick and the leak phase.
LIGHT = {"txt", "csv", "json", "docx", "odt", "eml", "doc", "xls", "rtf", "pdf"}
PHASES = ("corpus", "tiny", "latency", "memory")
# The targets on a 2-core machine; the api's bound is 1.5 x every upload at once.
TARGETS = {"corpus_ratio": 0.95, "tiny_ratio": 0.5, "unloaded_p50_ms": 3.0,
           "api_peak_rss_mb": 32 * 16 * 1.5, "child_growth_mb": 10.0}


@dataclass(frozen=True)
class Workload:
    passes: int = 3  # corpus passes per arm
    light_only: bool = False  # only LIGHT formats, and no OCR
    tiny_jobs: int = 2000
    tiny_bytes: int = 1024
    latency_jobs: int = 300
    in_flight: int = 8
    upload_clients: int = 32
    upload_mb: int = 16
    child_jobs: int = 1000  # per child, for the leak check


WORKLOAD = Workload()
QUICK = Workload(passes=1, light_only=True, tiny_jobs=60, latency_jobs=20, upload_clients=4,
                 upload_mb=1, child_jobs=20)


# --- documents ------------------------------------------------------------------------
@dataclass(frozen=True)
class Doc:
    id: str
    path: Path
    format: str
    kwargs: dict = field(default_factory=dict)  # for textract.process, method included
    query: dict = field(default_factory=dict)  # for the upload

    def body(self) -> tuple[bytes, str]:
        return multipart_body(self.path.name, self.path.read_bytes())


def corpus_docs(light_only: bool = False) -> list[Doc]:
    """Every supported corpus document, with the method the scanned ones are asked for."""
    docs = []
    for doc in corpus_documents(CORPUS):
        if light_only and doc.format not in LIGHT:
            continue
        kwargs = dict(doc.kwargs)
        query = {"extension": kwargs["extension"]} if "extension" in kwargs else {}
        if doc.id in METHODS:
            if light_only:
                continue
            kwargs["method"] = query["method"] = METHODS[doc.id]
        docs.append(Doc(doc.id, doc.path, doc.format, kwargs, query))
    return docs


def tiny_text(size: int) -> bytes:
    line = b"The quick brown fox jumps over the lazy dog. "
    return (line * (size // len(line) + 1))[:size - 1] + b"\n"


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# --- CPU accounting: robust where wall time is not (the machine is shared) -------------
def cpu_seconds(procs: list[psutil.Process], own: bool = True) -> float:
    """CPU seconds of `procs` (with their reaped tools), plus this process's own."""
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    if own:  # the client, or the pool's result handling; not the reaped pool children
        t = psutil.Process().cpu_times()
        total += t.user + t.system
    return total


@dataclass
class Slice:
    """One timed stretch of one arm."""

    count: int
    seconds: float
    cpu: float
    per_task: dict = field(default_factory=dict)  # ceiling: index -> (seconds, digest)
    replies: list = field(default_factory=list)  # service: Reply per request, in order


def arm(slices: list[Slice]) -> dict:
    """An arm's figures over its slices: docs/s, CPU per document, latencies."""
    count = sum(s.count for s in slices)
    seconds = sum(s.seconds for s in slices)
    out = {"count": count, "seconds": seconds, "rate": count / seconds if seconds else 0.0,
           "cpu_ms_per_doc": 1000 * sum(s.cpu for s in slices) / max(1, count)}
    replies = [r for s in slices for r in s.replies]
    if replies:
        latencies = [r.seconds * 1000 for r in replies]
        done = sum(r.status == 200 and r.job.get("state") == "done" for r in replies)
        out |= {"done": done, "failed": len(replies) - done, "p50_ms": pct(latencies, 50),
                "p95_ms": pct(latencies, 95), "p99_ms": pct(latencies, 99)}
    return out


def compare(ceiling_slices: list[Slice], service_slices: list[Slice]) -> dict:
    ceiling, service = arm(ceiling_slices), arm(service_slices)
    return {"ceiling": ceiling, "service": service,
            "ratio": service["rate"] / ceiling["rate"] if ceiling["rate"] else 0.0,
            # Capacity from CPU alone: what the ratio would be on an otherwise idle machine
            # where both arms keep every core busy.
            "cpu_ratio": (ceiling["cpu_ms_per_doc"] / service["cpu_ms_per_doc"]
                          if service["cpu_ms_per_doc"] else 0.0)}


# --- the ceiling: textract in a plain pool --------------------------------------------
def _ceiling_task(task: tuple[int, str, dict]) -> tuple[int, float, str]:
    index, path, kwargs = task
    started = time.perf_counter()
    out = textract.process(path, **kwargs)
    return index, time.perf_counter() - started, digest(out)


def _warm(_: int) -> int:
    return os.getpid()


def _quiet() -> None:
    # textract's parsers warn (bs4, openpyxl) on corpus documents: noise on the console.
    warnings.simplefilter("ignore")


class Ceiling:
    """textract in a fork pool of `workers`, kept across slices; its start is not timed."""

    def __init__(self, workers: int) -> None:
        os.environ["OMP_THREAD_LIMIT"] = "1"
        me = psutil.Process()
        before = {c.pid for c in me.children()}
        self.pool = multiprocessing.get_context("fork").Pool(workers, initializer=_quiet)
        self.pool.map(_warm, range(workers * 4))
        self.procs = [c for c in me.children() if c.pid not in before]

    def run(self, tasks: list[tuple[str, dict]]) -> Slice:
        cpu, started = cpu_seconds(self.procs), time.perf_counter()
        results = list(self.pool.imap_unordered(
            _ceiling_task, [(i, path, kwargs) for i, (path, kwargs) in enumerate(tasks)],
            chunksize=1))
        seconds = time.perf_counter() - started
        return Slice(len(tasks), seconds, cpu_seconds(self.procs) - cpu,
                     per_task={i: (t, d) for i, t, d in results})

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


# --- the service: HTTP load with a bounded number in flight ---------------------------
@dataclass
class Reply:
    status: int
    seconds: float
    job: dict


async def _post_all(stack: Stack | Floor, requests: list[tuple[bytes, str, dict]],
                    in_flight: int) -> tuple[list[Reply], float]:
    """POST each (body, content type, query) with `in_flight` at a time, in order."""
    replies: list[Reply | None] = [None] * len(requests)
    next_index = iter(range(len(requests)))
    connector = aiohttp.TCPConnector(limit=in_flight, force_close=False)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(stack.url, connector=connector, timeout=timeout,
                                     headers={"X-API-Key": stack.api_key}) as session:

        async def client() -> None:
            for i in next_index:
                body, content_type, query = requests[i]
                started = time.perf_counter()
                async with session.post(f"/v1/jobs?{urlencode(query)}", data=body,
                                        headers={"Content-Type": content_type}) as response:
                    raw = await response.read()
                replies[i] = Reply(response.status, time.perf_counter() - started,
                                   _json(raw))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
    return [r for r in replies if r is not None], elapsed


def _json(raw: bytes) -> dict:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"error": {"code": "not_json", "message": raw[:200].decode("utf-8", "replace")}}
    return value if isinstance(value, dict) else {}


def load(stack: Stack, requests: list[tuple[bytes, str, dict]], in_flight: int) -> dict:
    replies, elapsed = asyncio.run(_post_all(stack, requests, in_flight))
    return arm([Slice(len(requests), elapsed, 0.0, replies=replies)]) | {"replies": replies}


class HttpArm:
    """An HTTP target (a stack's api, or the floor app) and the processes behind it,
    measured by their CPU plus the client's."""

    def __init__(self, target: Stack | Floor, procs: list[psutil.Process]) -> None:
        self.target = target
        self.procs = procs

    def run(self, requests: list[tuple[bytes, str, dict]], in_flight: int) -> Slice:
        cpu = cpu_seconds(self.procs)
        replies, seconds = asyncio.run(_post_all(self.target, requests, in_flight))
        return Slice(len(requests), seconds, cpu_seconds(self.procs) - cpu, replies=replies)


def service(stack: Stack) -> HttpArm:
    """The stack's long-lived processes (supervisord, redis, api, pool master, children)."""
    top = psutil.Process(stack.process.pid)
    programs = top.children()
    # Two levels down: textract's tools (a third level) are counted through their parent
    # child's reaped-children times.
    return HttpArm(stack, [top, *programs, *(c for p in programs for c in p.children())])


class Floor:
    """`bench.floor` (a bare aiohttp app, no service behind it) in a process of its own."""

    def __init__(self) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.api_key = ""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", self.url.rsplit(":", 1)[1]], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, 30, "the floor app")
        self.arm = HttpArm(self, [psutil.Process(self.process.pid)])

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/health",
                                                                  timeout=1) as response:
            return response.status == 200
        return False

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# --- phases ---------------------------------------------------------------------------
def interleaved(passes: int, ceiling_run, service_run) -> tuple[list[Slice], list[Slice]]:
    """Alternate the arms (C S, S C, C S, ...) so a change in the machine's load between
    slices falls on both arms alike."""
    ceiling_slices, service_slices = [], []
    for n in range(passes):
        order = ("c", "s") if n % 2 == 0 else ("s", "c")
        for which in order:
            if which == "c":
                ceiling_slices.append(ceiling_run())
            else:
                service_slices.append(service_run())
    return ceiling_slices, service_slices


def phase_corpus(work: Workload, ceiling: Ceiling, service: HttpArm) -> dict:
    docs = corpus_docs(work.light_only)
    bodies = [(*d.body(), {**d.query, "wait": 60}) for d in docs]
    c_slices, s_slices = interleaved(
        work.passes, lambda: ceiling.run([(str(d.path), d.kwargs) for d in docs]),
        lambda: service.run(bodies, work.in_flight))
    formats: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    mismatches = set()
    for c_slice, s_slice in zip(c_slices, s_slices, strict=True):
        for i, (doc, reply) in enumerate(zip(docs, s_slice.replies, strict=True)):
            seconds, expected = c_slice.per_task[i]
            entry = formats[doc.format]
            entry["textract_ms"].append(seconds * 1000)
            entry["service_extract_ms"].append(float(reply.job.get("duration_ms") or 0))
            entry["service_e2e_ms"].append(reply.seconds * 1000)
            text = reply.job.get("text")
            if text is None or digest(text.encode()) != expected:
                mismatches.add(doc.id)
    per_format = {fmt: {name: statistics.median(v) for name, v in series.items()}
                  | {"docs": len(series["textract_ms"]) // max(1, work.passes)}
                  for fmt, series in sorted(formats.items())}
    return {"docs": len(docs) * work.passes, **compare(c_slices, s_slices),
            "per_format": per_format, "text_mismatches": sorted(mismatches)}


def phase_tiny(work: Workload, ceiling: Ceiling, service: HttpArm,
               spool: Path) -> dict:
    data = tiny_text(work.tiny_bytes)
    path = spool / "tiny.txt"
    path.write_bytes(data)
    body = (*multipart_body("tiny.txt", data), {"wait": 60})
    slices = 4
    per_slice = work.tiny_jobs // slices
    c_slices, s_slices = interleaved(
        slices, lambda: ceiling.run([(str(path), {})] * per_slice),
        lambda: service.run([body] * per_slice, work.in_flight))
    result = {"jobs": per_slice * slices, **compare(c_slices, s_slices)}
    floor = Floor()
    try:
        floor_arm = arm([floor.arm.run([body] * per_slice, work.in_flight)
                         for _ in range(slices)])
    finally:
        floor.close()
    # A service of this shape does at least the floor's work and textract's: the best
    # CPU ratio it could reach, with nothing of its own (no Redis, no queue, no logs).
    textract_cpu = result["ceiling"]["cpu_ms_per_doc"]
    floor_arm["best_cpu_ratio"] = textract_cpu / (textract_cpu + floor_arm["cpu_ms_per_doc"])
    return result | {"floor": floor_arm}


def phase_latency(stack: Stack, work: Workload) -> dict:
    body = multipart_body("tiny.txt", tiny_text(work.tiny_bytes))
    load(stack, [(*body, {"wait": 10})] * 10, 1)  # warm the connection and the children
    result = load(stack, [(*body, {"wait": 10})] * work.latency_jobs, 1)
    return {"jobs": work.latency_jobs, "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"], "failed": result["failed"]}


def phase_memory(stack: Stack, work: Workload) -> dict:
    # Children first: the big uploads would leave their high-water mark in them.
    children = child_rss(stack, work)
    return {"api": api_peak_rss(stack, work), "children": children}


def api_peak_rss(stack: Stack, work: Workload) -> dict:
    """The api's peak RSS while `upload_clients` upload `upload_mb` MB each at once."""
    pid = stack.program_pid("api")
    reset = _reset_peak(pid)
    size = work.upload_mb * MIB
    result = measure_upload_rss(stack, clients=work.upload_clients, upload_bytes=size)
    # VmHWM sees a peak between two samples too; it is this phase's after the reset.
    peak = max(result.peak_rss, _vm_hwm(pid) if reset else 0)
    _forget_large_jobs(stack, size)
    return {"clients": work.upload_clients, "upload_mb": work.upload_mb,
            "accepted": result.statuses.get(202, 0), "baseline_mb": result.baseline_rss / MIB,
            "peak_mb": peak / MIB, "sampled_peak_mb": result.peak_rss / MIB,
            "peak_source": "VmHWM" if reset else "sampled"}


def _forget_large_jobs(stack: Stack, size: int) -> None:
    """Wait for the big uploads to be extracted, then delete them (Redis holds them)."""
    with stack.redis() as r:
        wait_for(lambda: int(r.get(DEPTH) or 0) == 0, 600, "the queue to drain")
        ids = [key.decode().rsplit(":", 1)[1] for key in r.scan_iter(job_key("*"))
               if int(r.hget(key, "size") or 0) >= size]
    asyncio.run(_delete(stack, ids))


async def _delete(stack: Stack, ids: list[str]) -> None:
    async with aiohttp.ClientSession(stack.url, headers={"X-API-Key": stack.api_key}) as s:
        for job_id in ids:
            async with s.delete(f"/v1/jobs/{job_id}") as response:
                await response.read()


def child_rss(stack: Stack, work: Workload) -> dict:
    """Each child's RSS (with its tools) before and after `child_jobs` jobs of its own."""
    docs = [d for d in corpus_docs(light_only=True)]
    bodies = [(*d.body(), {**d.query, "wait": 60}) for d in docs]
    load(stack, bodies * 2, work.in_flight)  # warm: every parser imported in every child
    before = _children(stack)
    target = {pid: beat["jobs"] + work.child_jobs for pid, beat in before.items()}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        now = _children(stack)
        if set(now) != set(before) or all(now[p]["jobs"] >= target[p] for p in target):
            break
        load(stack, bodies * 4, work.in_flight)
    after = _children(stack)
    children = []
    for pid, beat in before.items():
        later = after.get(pid)
        children.append({"pid": pid, "rss_before_mb": beat["rss"],
                         "rss_after_mb": later["rss"] if later else None,
                         "jobs": (later["jobs"] - beat["jobs"]) if later else None,
                         "growth_mb": (later["rss"] - beat["rss"]) if later else None,
                         "recycled": later is None})
    return {"per_child": children,
            "max_growth_mb": max((c["growth_mb"] or 0) for c in children) if children else 0}


def _children(stack: Stack) -> dict[int, dict]:
    """pid -> jobs done (from its heartbeat) and tree RSS (psutil), for every child."""
    wait_for(lambda: stack.live_workers() >= stack.worker_count, 30, "heartbeats")
    with stack.redis() as r:
        beats = [orjson.loads(v) for v in r.mget(list(r.scan_iter(heartbeat_key("*"))))
                 if v]
    out = {}
    for beat in beats:
        with contextlib.suppress(psutil.Error):
            out[beat["pid"]] = {"jobs": beat["jobs"],
                                "rss": tree_rss_mb(beat["pid"])}
    return out


def _reset_peak(pid: int) -> bool:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so the peak is this phase's.
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# --- one run, several runs, the report ------------------------------------------------
def run_once(stack: Stack, work: Workload, only: tuple[str, ...], workers: int) -> dict:
    result: dict[str, object] = {"loadavg_before": os.getloadavg()[0]}
    if "corpus" in only or "tiny" in only:
        ceiling, http = Ceiling(workers), service(stack)
        try:
            if "corpus" in only:
                result["corpus"] = phase_corpus(work, ceiling, http)
            if "tiny" in only:
                result["tiny"] = phase_tiny(work, ceiling, http, stack.root)
        finally:
            ceiling.close()
    if "latency" in only:
        result["latency"] = phase_latency(stack, work)
    if "memory" in only:
        result["memory"] = phase_memory(stack, work)
    result["loadavg_after"] = os.getloadavg()[0]
    return result


def summarise(runs: list[dict]) -> dict:
    """Medians over runs of the figures the table shows; ratios are per-run first."""
    def med(*keys: str) -> float | None:
        values = []
        for run in runs:
            value: object = run
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, int | float):
                values.append(value)
        return statistics.median(values) if values else None

    out: dict[str, object] = {}
    for phase, arm, metric in [("corpus", "ceiling", "rate"), ("corpus", "service", "rate"),
                               ("corpus", "service", "p50_ms"), ("corpus", "service", "p95_ms"),
                               ("corpus", "service", "p99_ms"), ("tiny", "ceiling", "rate"),
                               ("tiny", "service", "rate"), ("tiny", "service", "p50_ms"),
                               ("tiny", "service", "p95_ms"), ("tiny", "service", "p99_ms"),
                               ("corpus", "ceiling", "cpu_ms_per_doc"),
                               ("corpus", "service", "cpu_ms_per_doc"),
                               ("tiny", "ceiling", "cpu_ms_per_doc"),
                               ("tiny", "service", "cpu_ms_per_doc"),
                               ("tiny", "floor", "rate"), ("tiny", "floor", "cpu_ms_per_doc"),
                               ("tiny", "floor", "best_cpu_ratio")]:
        out[f"{phase}_{arm}_{metric}"] = med(phase, arm, metric)
    out["corpus_ratio"] = med("corpus", "ratio")
    out["tiny_ratio"] = med("tiny", "ratio")
    out["corpus_cpu_ratio"] = med("corpus", "cpu_ratio")
    out["tiny_cpu_ratio"] = med("tiny", "cpu_ratio")
    out["unloaded_p50_ms"] = med("latency", "p50_ms")
    out["unloaded_p99_ms"] = med("latency", "p99_ms")
    out["api_peak_rss_mb"] = med("memory", "api", "peak_mb")
    out["child_growth_mb"] = med("memory", "children", "max_growth_mb")
    return out


def verdicts(summary: dict, targets: dict[str, float]) -> dict[str, bool | None]:
    def check(name: str, ok) -> bool | None:
        return None if summary.get(name) is None else bool(ok(summary[name]))

    return {"corpus_ratio": check("corpus_ratio", lambda v: v >= targets["corpus_ratio"]),
            "tiny_ratio": check("tiny_ratio", lambda v: v >= targets["tiny_ratio"]),
            "unloaded_p50_ms": check("unloaded_p50_ms",
                                     lambda v: v <= targets["unloaded_p50_ms"]),
            "api_peak_rss_mb": check("api_peak_rss_mb",
                                     lambda v: v < targets["api_peak_rss_mb"]),
            "child_growth_mb": check("child_growth_mb",
                                     lambda v: v <= targets["child_growth_mb"])}


def table(report: dict) -> str:
    s, v, runs, meta = report["summary"], report["verdicts"], report["runs"], report["meta"]
    work, targets = meta["workload"], report["targets"]

    def f(value: float | None, fmt: str = "{:.1f}") -> str:
        return "-" if value is None else fmt.format(value)

    def row(label: str, service: str = "", ceiling: str = "", ratio: str = "",
            target: str = "", verdict: str = "") -> str:
        mark = {True: "ok", False: "MISSED", None: ""}[v.get(verdict)] if verdict else ""
        return f"{label:32}{service:>18}{ceiling:>10}{ratio:>8}  {target} {mark}".rstrip()

    def spread(prefix: str, digits: str = "{:.1f}") -> str:
        return " / ".join(f(s[f"{prefix}_{q}_ms"], digits) for q in ("p50", "p95", "p99"))

    docs = runs[-1].get("corpus", {}).get("docs", "-")
    lines = [f"textractd benchmark  commit {meta['commit']}  {meta['workers']} workers  "
             f"{len(runs)} run(s), medians  load {f(meta['loadavg_start'], '{:.2f}')}"
             + ("  QUICK" if meta["quick"] else "")
             + ("" if meta["fast_doc"] else "  .doc via soffice (like for like)"),
             row("", "service", "ceiling", "ratio", "target"),
             row(f"corpus ({docs} docs) docs/s", f(s["corpus_service_rate"]),
                 f(s["corpus_ceiling_rate"]), f(s["corpus_ratio"], "{:.2f}x"),
                 f">= {targets['corpus_ratio']}x", "corpus_ratio"),
             row("  CPU ms per doc (all processes)", f(s["corpus_service_cpu_ms_per_doc"]),
                 f(s["corpus_ceiling_cpu_ms_per_doc"]), f(s["corpus_cpu_ratio"], "{:.2f}x")),
             row("  latency ms p50 / p95 / p99", spread("corpus_service", "{:.0f}")),
             row(f"tiny ({work['tiny_jobs']} x 1 KB) jobs/s", f(s["tiny_service_rate"]),
                 f(s["tiny_ceiling_rate"]), f(s["tiny_ratio"], "{:.2f}x"),
                 f">= {targets['tiny_ratio']}x", "tiny_ratio"),
             row("  CPU ms per job (all processes)", f(s["tiny_service_cpu_ms_per_doc"], "{:.2f}"),
                 f(s["tiny_ceiling_cpu_ms_per_doc"], "{:.2f}"), f(s["tiny_cpu_ratio"], "{:.2f}x")),
             row("  latency ms p50 / p95 / p99", spread("tiny_service")),
             row("  HTTP floor jobs/s, CPU ms per job", f(s["tiny_floor_rate"]),
                 f(s["tiny_floor_cpu_ms_per_doc"], "{:.2f}")),
             row("  best CPU ratio (floor + textract)", "", "",
                 f(s["tiny_floor_best_cpu_ratio"], "{:.2f}x")),
             row("unloaded latency ms p50 / p99", f"{f(s['unloaded_p50_ms'], '{:.2f}')} / "
                 f"{f(s['unloaded_p99_ms'], '{:.2f}')}", "", "",
                 f"p50 <= {targets['unloaded_p50_ms']:g} ms", "unloaded_p50_ms"),
             row(f"api peak RSS MB ({work['upload_clients']} x {work['upload_mb']} MB)",
                 f(s["api_peak_rss_mb"]), "", "", f"< {targets['api_peak_rss_mb']:.0f} MB",
                 "api_peak_rss_mb"),
             row(f"child RSS growth MB ({work['child_jobs']} jobs)", f(s["child_growth_mb"]),
                 "", "", f"<= {targets['child_growth_mb']:g} MB", "child_growth_mb")]
    last = runs[-1]
    if "corpus" in last:
        lines += ["", "per format, last run, median ms per document: textract in the ceiling pool;"
                      " service = the worker's extraction; e2e = upload to result",
                  f"{'format':8}{'docs':>5}{'textract':>10}{'service':>10}{'speed-up':>10}"
                  f"{'e2e':>9}"]
        for fmt, r in last["corpus"]["per_format"].items():
            speed = r["textract_ms"] / r["service_extract_ms"] if r["service_extract_ms"] else None
            lines.append(f"{fmt:8}{r['docs']:>5}{r['textract_ms']:>10.1f}"
                         f"{r['service_extract_ms']:>10.1f}{f(speed, '{:.1f}x'):>10}"
                         f"{r['service_e2e_ms']:>9.1f}")
        if last["corpus"]["text_mismatches"]:
            lines.append(f"TEXT DIFFERS from textract: {last['corpus']['text_mismatches']}")
    if "memory" in last:
        for child in last["memory"]["children"]["per_child"]:
            lines.append(f"child {child['pid']}: {f(child['rss_before_mb'])} -> "
                         f"{f(child['rss_after_mb'])} MB RSS over {child['jobs']} jobs"
                         + ("  (recycled)" if child["recycled"] else ""))
    return "\n".join(lines)


def _commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small workload (smoke test)")
    parser.add_argument("--runs", type=int, default=1, help="runs; figures are medians")
    parser.add_argument("--only", default=",".join(PHASES),
                        help=f"comma-separated phases of {', '.join(PHASES)}")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="WORKER_PROCESSES, for the service and the ceiling pool alike")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    parser.add_argument("--no-fast-doc", action="store_true",
                        help="send .doc through textract's soffice in the service too "
                             "(like for like: the service's own overhead alone)")
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder")
    args = parser.parse_args(argv)
    args.only = tuple(p.strip() for p in args.only.split(",") if p.strip())
    unknown = set(args.only) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    work = QUICK if args.quick else WORKLOAD
    env = {"WORKER_PROCESSES": str(args.workers), "OMP_THREAD_LIMIT": "1",
           # Recycling would hide a leak from the memory phase (and costs one fork per
           # WORKER_MAX_JOBS jobs, nothing next to the rest).
           "WORKER_MAX_JOBS": "1000000",
           "FAST_DOC": "0" if args.no_fast_doc else "1"}
    started = time.time()
    meta = {"commit": _commit(), "started_at": started, "workers": args.workers,
            "cpus": os.cpu_count(), "quick": args.quick, "fast_doc": not args.no_fast_doc,
            "workload": asdict(work), "phases": list(args.only),
            "loadavg_start": os.getloadavg()[0], "python": sys.version.split()[0],
            "textract": getattr(textract, "VERSION", "2.x")}
    stack = Stack(env=env).start()
    runs = []
    try:
        for n in range(args.runs):
            runs.append(run_once(stack, work, args.only, args.workers))
            print(f"run {n + 1}/{args.runs} done", file=sys.stderr, flush=True)
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(stack.root, ignore_errors=True)
    meta["seconds"] = time.time() - started
    summary = summarise(runs)
    targets = dict(TARGETS)  # for the full workload; --quick only checks the machinery
    report = {"meta": meta, "summary": summary, "verdicts": verdicts(summary, targets),
              "targets": targets, "runs": runs}
    print(table(report))
    out = args.out or OUT_DIR / time.strftime("bench-%Y%m%dT%H%M%SZ.json", time.gmtime(started))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2
                                 | orjson.OPT_NON_STR_KEYS))
    print(f"JSON: {out}")
    return report


if __name__ == "__main__":
    main()
