"""How long a scan takes through a stack against textract.process(method="tesseract").

    python -m devtools.scan_latency [--runs 5] [--workers 2]

Scans: the corpus' ocr_text.pdf (3 pages) and two generated 10-page scans (the tests'
small pages, and A4 pages of 40 lines). Each run reads a scan with textract in this
process, then through an idle stack, one after the other, so both see the same
neighbours on a shared machine; the CPU each spent (this process and its tools; the
pool's processes and their tools) shows what the wall times cannot when other work
takes cores. tesseract runs on one thread in both (OMP_THREAD_LIMIT=1, as in the pool).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import textract

from devtools.corpus import CORPUS
from devtools.scans import make_scan
from devtools.stack import Stack

_TICKS = os.sysconf("SC_CLK_TCK")


def scans(folder: Path) -> dict[str, Path]:
    return {
        "corpus ocr_text.pdf (3 pages)": CORPUS / "textract-tests" / "pdf" / "ocr_text.pdf",
        "10 small pages (the tests')": make_scan(folder / "small.pdf", 10),
        "10 A4 pages, 40 lines": make_scan(folder / "a4.pdf", 10, lines=40, width_in=8.27,
                                           height_in=11.69, font_px=30),
    }


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live descendants, with their reaped children."""
    total = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        total += sum(int(x) for x in fields[11:15]) / _TICKS  # utime stime cutime cstime
    return total


def own_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def post(url: str, key: str, path: Path) -> dict:
    reply = httpx.post(f"{url}/v1/jobs", params={"filename": path.name, "method": "tesseract",
                                                 "wait": 300},
                       content=path.read_bytes(), headers={"X-API-Key": key}, timeout=330)
    return reply.json()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.scan_latency",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ["OMP_THREAD_LIMIT"] = "1"
    folder = Path(tempfile.mkdtemp(prefix="scan-latency-"))
    docs = scans(folder)
    rows: dict[str, dict[str, list[float]]] = {
        name: {k: [] for k in ("tx", "tx_cpu", "sv", "sv_cpu", "load")} for name in docs}
    same = dict.fromkeys(docs, True)
    with Stack(env={"WORKER_PROCESSES": str(args.workers)}) as stack:
        pool = stack.program_pid("workers")
        for _ in range(args.runs):
            for name, path in docs.items():
                row = rows[name]
                row["load"].append(os.getloadavg()[0])
                cpu, start = own_cpu(), time.perf_counter()
                text = textract.process(str(path), method="tesseract").decode("utf-8")
                row["tx"].append(time.perf_counter() - start)
                row["tx_cpu"].append(own_cpu() - cpu)
                cpu, start = tree_cpu(pool), time.perf_counter()
                job = post(stack.url, stack.api_key, path)
                row["sv"].append(time.perf_counter() - start)
                time.sleep(0.2)  # the last page's child settles its accounts
                row["sv_cpu"].append(tree_cpu(pool) - cpu)
                same[name] &= job.get("state") == "done" and job.get("text") == text
    med = statistics.median
    print(f"{'scan':32s} {'textract s':>10s} {'stack s':>8s} {'ratio':>6s} {'best':>5s} "
          f"{'cpu tx':>6s} {'cpu pool':>8s} {'load':>5s} same text")
    for name, row in rows.items():
        print(f"{name:32s} {med(row['tx']):10.2f} {med(row['sv']):8.2f} "
              f"{med(row['sv']) / med(row['tx']):5.2f}x {min(row['sv']) / min(row['tx']):4.2f}x "
              f"{med(row['tx_cpu']):6.2f} {med(row['sv_cpu']):8.2f} {med(row['load']):5.2f} "
              f"{same[name]}")
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
