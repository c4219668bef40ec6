"""The benchmark: the service against textract itself, in one run, on this machine.

`python -m bench` (or `scripts/bench`) starts its own stack as the tests do and
measures, in each run:
1. ceiling: the corpus extracted with `textract.process` in a `multiprocessing.Pool` of
   WORKER_PROCESSES, several passes, no HTTP, no Redis; docs/s;
2. corpus: the same documents over HTTP, 8 in flight (`POST /v1/jobs?wait=60`);
3. tiny: uploads of one 1 KB .txt, 8 in flight, against the same document in the pool;
4. celery: the tiny and the corpus workloads against Celery 5 (prefork, Redis broker and
   backend, the bytes in the task), interleaved; needs the bench extra (`pip install -e
   .[bench]`), and says so in one line without it while the other phases run;
5. batch: the same tiny document 32 to a request (POST /v1/batches) against one to a
   request, interleaved;
6. cli: `textractd extract` on a folder of the corpus documents against the benchmark's
   client on the same documents, as many in flight, interleaved;
7. latency: one tiny job at a time, upload to result;
8. scaling: generated text of 1 KB, 100 KB, 1 MB and 16 MB on stacks of 1, 2 and 4
   workers: throughput, latency loaded and alone, CPU per document;
9. memory: the api's peak RSS while 32 clients upload 16 MB each, and each child's RSS
   before and after 1,000 jobs (recycling is switched off so that growth would show).
Figures are medians over `--runs`; every ratio is taken within one run, since the
machine is shared. The workload is fixed (WORKLOAD) so that runs on different days
compare; `--quick` is a small one for the smoke test. JSON goes to var/bench/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import textract

from bench.phases import CORPUS_PHASES, PHASES, run_once
from bench.report import (
    LIKE_FOR_LIKE_CORPUS_RATIO,
    TARGETS,
    commit_id,
    summarise,
    table,
    verdicts,
    write,
)
from bench.workload import CORPUS, MANIFEST, QUICK, WORKLOAD, has_corpus, service_env
from devtools.stack import Stack

NO_CORPUS = """\
scripts/bench: no document corpus at {corpus} (no {manifest} there). The corpus and \
memory phases extract a corpus: a folder of real documents with their expected text and a \
tab-separated {manifest} listing them, one row per document with the columns document \
(path under the folder), format, textract_kwargs ('-' or a Python dict literal for \
textract.process), expected ('-', the path of the expected text, or STANDARD:<sentence>) \
and bytes. The project keeps its corpus outside the repository, in shared/corpus beside \
it; to make one, copy the tests/ folder of textract's own repository (deanmalmgren/textract \
on GitHub: one folder per format, each document beside its expected .txt) and list its \
documents in a {manifest}. Then put it there, or pass --corpus DIR (or set \
TEXTRACTD_CORPUS), or run only the phases that need none: --only tiny,batch,latency,scaling.
"""


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
    parser.add_argument("--corpus", type=Path, default=CORPUS, metavar="DIR",
                        help=f"the document corpus, a folder with a {MANIFEST} (default: "
                             f"$TEXTRACTD_CORPUS, else shared/corpus beside the repository)")
    args = parser.parse_args(argv)
    args.only = tuple(p.strip() for p in args.only.split(",") if p.strip())
    unknown = set(args.only) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    if CORPUS_PHASES & set(args.only) and not has_corpus(args.corpus):
        # A user's clone has no corpus: say what one is rather than end in a traceback.
        parser.exit(2, NO_CORPUS.format(corpus=args.corpus, manifest=MANIFEST))
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    work = QUICK if args.quick else WORKLOAD
    env = service_env(args.workers, work, fast_doc=not args.no_fast_doc)
    started = time.time()
    meta = {"commit": commit_id(), "started_at": started, "workers": args.workers,
            "cpus": os.cpu_count(), "quick": args.quick, "fast_doc": not args.no_fast_doc,
            "workload": asdict(work), "phases": list(args.only), "corpus": str(args.corpus),
            "loadavg_start": os.getloadavg()[0], "python": sys.version.split()[0],
            "textract": getattr(textract, "VERSION", "2.x")}
    stack = Stack(env=env).start()
    runs = []
    try:
        for n in range(args.runs):
            runs.append(run_once(stack, work, args.only, args.workers, args.corpus))
            print(f"run {n + 1}/{args.runs} done", file=sys.stderr, flush=True)
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(stack.root, ignore_errors=True)
    meta["seconds"] = time.time() - started
    summary = summarise(runs)
    targets = dict(TARGETS)  # for the full workload; --quick only checks the machinery
    if args.no_fast_doc:
        targets["corpus_ratio"] = LIKE_FOR_LIKE_CORPUS_RATIO
    report = {"meta": meta, "summary": summary, "verdicts": verdicts(summary, targets),
              "targets": targets, "runs": runs}
    print(table(report))
    out = write(report, args.out)
    print(f"JSON: {out}")
    return report


if __name__ == "__main__":
    main()
