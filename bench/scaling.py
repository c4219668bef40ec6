"""The scaling phase: how each cost grows with the document's size and the worker count
(issue 18 item 6).

The documents are generated plain text (the tiny document's sentence repeated to 1 KB,
100 KB, 1 MB and 16 MB, binary units): textract's own work on .txt is a read, so what
grows is what the service adds per byte (the upload, Redis, the spool, the text coming
back). Each worker count (WORKER_PROCESSES 1, 2, 4; on a 2-core machine the last shows
oversubscription) gets a stack of its own. Per cell: the time of one job alone (the
unloaded latency), then the throughput and latency with the benchmark's usual number in
flight. Every job is deleted once measured, so Redis holds no 16 MB texts between cells.
"""

from __future__ import annotations

import shutil

from bench.arms import HttpArm, arm, delete_jobs, service
from bench.loadgen import MIB
from bench.workload import KIB, Workload, service_env, tiny_text
from devtools.multipart import multipart_body
from devtools.stack import Stack

DOCUMENT = "generated plain text"
# Jobs measured one at a time per cell: enough for a median, few next to the loaded run.
ALONE = 5


def phase_scaling(work: Workload, fast_doc: bool = True) -> dict:
    cells = []
    for workers in work.scaling_workers:
        stack = Stack(env=service_env(workers, work, fast_doc)).start()
        try:
            http = service(stack)
            # Every child past its first job (its lazy imports) before anything is timed.
            warm = (*multipart_body("warm.txt", tiny_text(KIB)), {"wait": 60})
            http.run([warm] * (workers * 8), work.in_flight)
            cells += [_cell(stack, http, work, size, workers) for size in work.scaling_sizes]
        finally:
            stack.stop()
            shutil.rmtree(stack.root, ignore_errors=True)
    return {"document": DOCUMENT, "in_flight": work.in_flight, "cells": cells}


def _cell(stack: Stack, http: HttpArm, work: Workload, size: int, workers: int) -> dict:
    data = tiny_text(size)
    body = (*multipart_body("scaling.txt", data), {"wait": 300})
    jobs = work.jobs_of_size(size)
    alone_slice = http.run([body] * ALONE, 1, drop_text=True)
    loaded_slice = http.run([body] * jobs, work.in_flight, drop_text=True)
    alone, loaded = arm([alone_slice]), arm([loaded_slice])
    # The text is the document itself: every reply that says done must carry all of it.
    whole = sum(r.job.get("chars") == size for r in loaded_slice.replies
                if r.job.get("state") == "done")
    delete_jobs(stack, [r.job["id"] for r in alone_slice.replies + loaded_slice.replies
                        if "id" in r.job])
    return {"bytes": size, "workers": workers, "jobs": jobs, "rate": loaded["rate"],
            "mb_per_s": loaded["rate"] * size / MIB, "p50_ms": loaded["p50_ms"],
            "p99_ms": loaded["p99_ms"], "cpu_ms_per_doc": loaded["cpu_ms_per_doc"],
            "done": loaded["done"], "failed": loaded["failed"], "whole_text": whole,
            "alone_p50_ms": alone["p50_ms"]}
