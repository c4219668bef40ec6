"""The benchmark's phases, each against the arms: corpus, tiny, celery, batch, cli,
latency, scaling, memory.

A run measures the phases asked for, in that order; the corpus, tiny and celery phases
interleave the other arm (the ceiling, or Celery) and the service so that a change in
the machine's load between slices falls on both arms alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson
import psutil

from bench import celery_arm
from bench.arms import (
    Ceiling,
    Floor,
    HttpArm,
    Slice,
    arm,
    compare,
    cpu_seconds,
    delete_jobs,
    interleaved,
    load,
    service,
)
from bench.loadgen import MIB, measure_upload_rss
from bench.scaling import phase_scaling
from bench.workload import Workload, corpus_docs, digest, tiny_text
from daemon.pool.watchdog import tree_rss_mb
from daemon.store import DEPTH, heartbeat_key, job_key
from devtools.multipart import multipart_body, multipart_files
from devtools.stack import Stack, wait_for

PHASES = ("corpus", "tiny", "celery", "batch", "cli", "latency", "scaling", "memory")
# The batch phase: tiny documents this many to a request (POST /v1/batches), with this
# many requests in flight: one being stored while the other's jobs run keeps the pool fed.
BATCH_FILES = 32
BATCH_IN_FLIGHT = 2
# The phases that read the corpus's documents; tiny and latency make their own.
CORPUS_PHASES = frozenset({"corpus", "celery", "cli", "memory"})


def phase_corpus(work: Workload, ceiling: Ceiling, service: HttpArm, corpus: Path) -> dict:
    docs = corpus_docs(work.light_only, corpus)
    tasks = [(str(d.path), d.kwargs) for d in docs]
    bodies = [(*d.body(), {**d.query, "wait": 60}) for d in docs]
    c_slices, s_slices = interleaved(work.passes, lambda: ceiling.run(tasks),
                                     lambda: service.run(bodies, work.in_flight))
    # Per format: the worker's time against textract's with one document at a time in
    # each arm. Under the load above, the service's children share the two cores with
    # the api, Redis and the client, which textract's pool does not: their times would
    # measure that crowding, not the extraction.
    c_one, s_one = ceiling.run(tasks, one_at_a_time=True), service.run(bodies, 1)
    formats: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i, (doc, reply) in enumerate(zip(docs, s_one.replies, strict=True)):
        entry = formats[doc.format]
        entry["textract_ms"].append(c_one.per_task[i][0] * 1000)
        entry["service_extract_ms"].append(float(reply.job.get("duration_ms") or 0))
        entry["service_e2e_ms"].append(reply.seconds * 1000)
    mismatches = {doc.id for c_slice, s_slice in zip([*c_slices, c_one], [*s_slices, s_one],
                                                     strict=True)
                  for i, (doc, reply) in enumerate(zip(docs, s_slice.replies, strict=True))
                  if reply.job.get("text") is None
                  or digest(reply.job["text"].encode()) != c_slice.per_task[i][1]}
    per_format = {fmt: {name: statistics.median(v) for name, v in series.items()}
                  | {"docs": len(series["textract_ms"])}
                  for fmt, series in sorted(formats.items())}
    return {"docs": len(docs) * work.passes, **compare(c_slices, s_slices),
            "per_format": per_format, "text_mismatches": sorted(mismatches)}


def phase_tiny(work: Workload, ceiling: Ceiling, service: HttpArm, workers: int,
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
    floor_arm = _floor_arm(Floor(), [body] * per_slice, work.in_flight, slices)
    shape_arm = _floor_arm(Floor(workers), [body] * per_slice, work.in_flight, slices)
    # A service of this shape does at least the floor's work and textract's: the best
    # CPU ratio it could reach, with nothing of its own (no Redis, no queue, no logs).
    textract_cpu = result["ceiling"]["cpu_ms_per_doc"]
    floor_arm["best_cpu_ratio"] = textract_cpu / (textract_cpu + floor_arm["cpu_ms_per_doc"])
    # What is ours in a tiny job's CPU: all of it but textract's and the HTTP floor's;
    # of it, the shape's floor (bench/shape_floor.py) costs at least its Redis hop.
    overhead = (result["service"]["cpu_ms_per_doc"] - textract_cpu
                - floor_arm["cpu_ms_per_doc"])
    shape_arm["hop_ms_per_job"] = shape_arm["cpu_ms_per_doc"] - floor_arm["cpu_ms_per_doc"]
    return result | {"floor": floor_arm, "shape_floor": shape_arm,
                     "overhead_ms_per_job": overhead}


def _floor_arm(floor: Floor, requests: list, in_flight: int, slices: int) -> dict:
    try:
        return arm([floor.arm.run(requests, in_flight) for _ in range(slices)])
    finally:
        floor.close()


def phase_celery(work: Workload, service: HttpArm, workers: int, corpus: Path) -> dict:
    """The service against Celery (bench/celery_arm.py) on the tiny and the corpus
    workloads, interleaved slice by slice: same documents, same number in flight."""
    if not celery_arm.available():
        print(celery_arm.INSTALL, file=sys.stderr, flush=True)
        return {"skipped": celery_arm.INSTALL}
    celery = celery_arm.CeleryArm(workers)
    try:
        data = tiny_text(work.tiny_bytes)
        body = (*multipart_body("tiny.txt", data), {"wait": 60})
        slices = 4
        per_slice = work.tiny_jobs // slices
        shape = Floor(workers)
        try:
            k_slices, s_slices, f_slices = interleaved(
                slices,
                lambda: celery.run([(data, "tiny.txt", {})] * per_slice, work.in_flight),
                lambda: service.run([body] * per_slice, work.in_flight),
                lambda: shape.arm.run([body] * per_slice, work.in_flight))
        finally:
            shape.close()
        tiny = {"jobs": per_slice * slices, **_versus_celery(k_slices, s_slices)}
        # How far the shape itself, with nothing of ours, gets past Celery on this machine.
        tiny["shape_floor"] = arm(f_slices)
        tiny["shape_floor_ratio"] = (tiny["shape_floor"]["rate"] / tiny["celery"]["rate"]
                                     if tiny["celery"]["rate"] else 0.0)
        docs = corpus_docs(work.light_only, corpus)
        tasks = [(d.path.read_bytes(), d.path.name, d.kwargs) for d in docs]
        bodies = [(*d.body(), {**d.query, "wait": 60}) for d in docs]
        k_slices, s_slices = interleaved(work.passes,
                                         lambda: celery.run(tasks, work.in_flight),
                                         lambda: service.run(bodies, work.in_flight))
    finally:
        celery.close()
    # Both arms run textract on the same bytes: the texts must be the same.
    mismatches = set()
    for k_slice, s_slice in zip(k_slices, s_slices, strict=True):
        for doc, k_reply, s_reply in zip(docs, k_slice.replies, s_slice.replies, strict=True):
            text = s_reply.job.get("text")
            if text is None or digest(text.encode()) != k_reply.job.get("digest"):
                mismatches.add(doc.id)
    corpus_result = {"docs": len(docs) * work.passes, **_versus_celery(k_slices, s_slices),
                     "text_mismatches": sorted(mismatches)}
    return {"workers": workers, "in_flight": work.in_flight, "pool": "prefork",
            "tiny": tiny, "corpus": corpus_result}


def _versus_celery(celery_slices: list[Slice], service_slices: list[Slice]) -> dict:
    """compare()'s figures with Celery as the other arm: ratio = service / Celery rate,
    cpu_ratio = Celery / service CPU per document."""
    result = compare(celery_slices, service_slices)
    result["celery"] = result.pop("ceiling")
    return result


def phase_batch(work: Workload, service: HttpArm) -> dict:
    """Tiny documents, one per request (POST /v1/jobs) against BATCH_FILES per request
    (POST /v1/batches), interleaved in one run; both wait for their results."""
    data = tiny_text(work.tiny_bytes)
    single = (*multipart_body("tiny.txt", data), {"wait": 60})
    batch = (*multipart_files([(f"tiny-{n:02}.txt", data) for n in range(BATCH_FILES)]),
             {"wait": 60})
    slices = 4
    per_slice = max(1, work.tiny_jobs // slices // BATCH_FILES) * BATCH_FILES
    single_slices, batch_slices = interleaved(
        slices, lambda: service.run([single] * per_slice, work.in_flight),
        lambda: service.run([batch] * (per_slice // BATCH_FILES), BATCH_IN_FLIGHT,
                            path="/v1/batches"))
    one, many = _jobs_arm(single_slices, per_request=1), _jobs_arm(batch_slices, BATCH_FILES)
    return {"jobs": per_slice * slices, "files_per_request": BATCH_FILES,
            "single": one, "batch": many,
            "ratio": many["rate"] / one["rate"] if one["rate"] else 0.0,
            "cpu_ratio": (one["cpu_ms_per_job"] / many["cpu_ms_per_job"]
                          if many["cpu_ms_per_job"] else 0.0)}


def _jobs_arm(slices: list[Slice], per_request: int) -> dict:
    """Jobs/s, CPU per job and how many ended done, whatever a request carried."""
    jobs = sum(s.count for s in slices) * per_request
    seconds = sum(s.seconds for s in slices)
    done = 0
    for reply in (r for s in slices for r in s.replies):
        entries = reply.job.get("jobs", []) if per_request > 1 else [reply.job]
        done += sum(reply.status == 200 and e.get("state") == "done" for e in entries)
    return {"jobs": jobs, "requests": sum(s.count for s in slices), "seconds": seconds,
            "rate": jobs / seconds if seconds else 0.0,
            "cpu_ms_per_job": 1000 * sum(s.cpu for s in slices) / max(1, jobs),
            "done": done, "failed": jobs - done}


def phase_cli(work: Workload, service: HttpArm, corpus: Path, scratch: Path) -> dict:
    """`textractd extract` (issue 16) on a folder of the corpus documents, run as people
    run it, against the benchmark's own client on the same documents with as many in
    flight (`-j`), interleaved. The folder holds the corpus `passes` times over, as the
    corpus phase sends it, so the command's start (about 0.2 s) is paid once per run over
    it, as on any real folder, not once per 63 documents. The documents the corpus phase
    sends with an option of their own (an extension hint, OCR) are left out: the command
    applies one option to every document."""
    docs = [d for d in corpus_docs(work.light_only, corpus) if not d.query]
    folder, out = scratch / "cli-corpus", scratch / "cli-texts"
    shutil.rmtree(folder, ignore_errors=True)
    for copy in range(work.passes):
        for doc in docs:
            link = folder / f"pass-{copy + 1}" / doc.id
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(doc.path.resolve())
    count = len(docs) * work.passes
    bodies = [(*d.body(), {"wait": 60}) for d in docs] * work.passes
    stack = service.target
    command = [str(Path(sys.executable).with_name("textractd")), "extract", str(folder),
               "-o", str(out), "-j", str(work.in_flight), "--url", stack.url,
               "--key", stack.api_key, "-q"]

    def run_cli() -> Slice:
        shutil.rmtree(out, ignore_errors=True)
        cpu = cpu_seconds(service.procs, own=False) + _reaped_cpu()
        started = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - started
        if finished.returncode != 0 or len(list(out.rglob("*.txt"))) != count:
            raise RuntimeError(f"textractd extract failed ({finished.returncode}): "
                               f"{finished.stderr[-2000:]}")
        return Slice(count, seconds,
                     cpu_seconds(service.procs, own=False) + _reaped_cpu() - cpu)

    # client, command, command, client: a drift in the machine's load falls on both
    client_slices, cli_slices = interleaved(2, lambda: service.run(bodies, work.in_flight),
                                            run_cli)
    client, cli = arm(client_slices), arm(cli_slices)
    return {"docs": count, "in_flight": work.in_flight, "client": client, "cli": cli,
            "ratio": cli["rate"] / client["rate"] if client["rate"] else 0.0}


def _reaped_cpu() -> float:
    """CPU seconds of this process's children it has waited for (the command)."""
    t = psutil.Process().cpu_times()
    return t.children_user + t.children_system


def phase_latency(stack: Stack, work: Workload) -> dict:
    body = multipart_body("tiny.txt", tiny_text(work.tiny_bytes))
    load(stack, [(*body, {"wait": 10})] * 10, 1)  # warm the connection and the children
    result = load(stack, [(*body, {"wait": 10})] * work.latency_jobs, 1)
    return {"jobs": work.latency_jobs, "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"], "failed": result["failed"]}


def phase_memory(stack: Stack, work: Workload, corpus: Path) -> dict:
    # Children first: the big uploads would leave their high-water mark in them.
    children = child_rss(stack, work, corpus)
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
    delete_jobs(stack, ids)


def child_rss(stack: Stack, work: Workload, corpus: Path) -> dict:
    """Each child's RSS (with its tools) before and after `child_jobs` jobs of its own."""
    docs = corpus_docs(light_only=True, corpus=corpus)
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


def run_once(stack: Stack, work: Workload, only: tuple[str, ...], workers: int,
             corpus: Path) -> dict:
    result: dict[str, object] = {"loadavg_before": os.getloadavg()[0]}
    if "corpus" in only or "tiny" in only:
        ceiling, http = Ceiling(workers), service(stack)
        try:
            if "corpus" in only:
                result["corpus"] = phase_corpus(work, ceiling, http, corpus)
            if "tiny" in only:
                result["tiny"] = phase_tiny(work, ceiling, http, workers, stack.root)
        finally:
            ceiling.close()
    if "celery" in only:
        result["celery"] = phase_celery(work, service(stack), workers, corpus)
    if "batch" in only:
        result["batch"] = phase_batch(work, service(stack))
    if "cli" in only:
        result["cli"] = phase_cli(work, service(stack), corpus, stack.root)
    if "latency" in only:
        result["latency"] = phase_latency(stack, work)
    if "scaling" in only:
        result["scaling"] = phase_scaling(work, fast_doc=stack.env.get("FAST_DOC") != "0")
    if "memory" in only:
        result["memory"] = phase_memory(stack, work, corpus)
    result["loadavg_after"] = os.getloadavg()[0]
    return result

