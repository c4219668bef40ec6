"""The benchmark's arms: what is measured, and what each measurement costs in CPU.

The ceiling is textract in a plain fork pool (no HTTP, no Redis); the service is a
stack's api under HTTP load with a bounded number in flight; the floor is a bare
aiohttp app (bench/floor.py) driven by the same client. Each arm counts the CPU of the
processes behind it plus the client's, since wall time on a shared machine is not robust.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import orjson
import psutil
import textract

from bench.workload import digest
from daemon.config import ROOT
from devtools.redis_server import RedisServer
from devtools.stack import Stack, free_port, wait_for


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


def interleaved(passes: int, *runs: Callable[[], Slice]) -> tuple[list[Slice], ...]:
    """Alternate the arms (the ceiling or Celery, the service, maybe a floor) forwards
    and backwards (O S, S O, O S, ...) so a change in the machine's load between slices
    falls on every arm alike. A list of slices per arm, in the order given."""
    slices: list[list[Slice]] = [[] for _ in runs]
    for n in range(passes):
        order = range(len(runs)) if n % 2 == 0 else reversed(range(len(runs)))
        for which in order:
            slices[which].append(runs[which]())
    return tuple(slices)


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

    def run(self, tasks: list[tuple[str, dict]], one_at_a_time: bool = False) -> Slice:
        cpu, started = cpu_seconds(self.procs), time.perf_counter()
        numbered = [(i, path, kwargs) for i, (path, kwargs) in enumerate(tasks)]
        results = ([self.pool.apply(_ceiling_task, (task,)) for task in numbered]
                   if one_at_a_time
                   else list(self.pool.imap_unordered(_ceiling_task, numbered, chunksize=1)))
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
                    in_flight: int, path: str = "/v1/jobs",
                    drop_text: bool = False) -> tuple[list[Reply], float]:
    """POST each (body, content type, query) with `in_flight` at a time, in order.
    `drop_text`: keep only the text's length (`chars`), not the text (large documents)."""
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
                async with session.post(f"{path}?{urlencode(query)}", data=body,
                                        headers={"Content-Type": content_type}) as response:
                    raw = await response.read()
                job = _json(raw)
                if drop_text and isinstance(job.get("text"), str):
                    job["chars"] = len(job.pop("text"))
                replies[i] = Reply(response.status, time.perf_counter() - started, job)

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

    def run(self, requests: list[tuple[bytes, str, dict]], in_flight: int,
            path: str = "/v1/jobs", drop_text: bool = False) -> Slice:
        cpu = cpu_seconds(self.procs)
        replies, seconds = asyncio.run(_post_all(self.target, requests, in_flight, path,
                                                  drop_text))
        return Slice(len(requests), seconds, cpu_seconds(self.procs) - cpu, replies=replies)


def delete_jobs(stack: Stack, ids: list[str]) -> None:
    """DELETE /v1/jobs/{id} for each: Redis need not keep what was only measured."""
    asyncio.run(_delete(stack, ids))


async def _delete(stack: Stack, ids: list[str]) -> None:
    async with aiohttp.ClientSession(stack.url, headers={"X-API-Key": stack.api_key}) as s:
        for job_id in ids:
            async with s.delete(f"/v1/jobs/{job_id}") as response:
                await response.read()


def service(stack: Stack) -> HttpArm:
    """The stack's long-lived processes (supervisord, redis, api, pool master, children)."""
    assert stack.process is not None, "the stack is started before it is measured"
    top = psutil.Process(stack.process.pid)
    programs = top.children()
    # Two levels down: textract's tools (a third level) are counted through their parent
    # child's reaped-children times.
    return HttpArm(stack, [top, *programs, *(c for p in programs for c in p.children())])


class Floor:
    """`bench.floor` (a bare aiohttp app, no service behind it) in a process of its own;
    or, with `shape`, `bench.shape_floor` (the least a service of this shape does) with
    its workers and a redis-server of its own."""

    def __init__(self, shape: int = 0) -> None:
        """`shape`: the shape floor's worker count; 0 for the bare HTTP floor."""
        self.url = f"http://127.0.0.1:{free_port()}"
        self.api_key = ""
        self.redis: RedisServer | None = None
        port = self.url.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "bench.floor", port]
        if shape:
            self.redis = RedisServer(Path(tempfile.mkdtemp(prefix="txd-shape-"))).start()
            command = [sys.executable, "-m", "bench.shape_floor", port,
                       str(self.redis.socket), str(shape)]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for(self._answers, 30, "the floor app")
        app = psutil.Process(self.process.pid)
        self.workers = app.children()  # the shape floor's; none for the bare floor
        redis_procs = ([psutil.Process(self.redis.process.pid)]
                       if self.redis and self.redis.process else [])
        self.arm = HttpArm(self, [app, *self.workers, *redis_procs])

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/health",
                                                                  timeout=1) as response:
            return response.status == 200
        return False

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        for worker in self.workers:  # daemonic, but a worker blocked in Redis may linger
            with contextlib.suppress(psutil.Error):
                worker.terminate()
                worker.wait(10)
        if self.redis:
            self.redis.stop()
            shutil.rmtree(self.redis.root, ignore_errors=True)
