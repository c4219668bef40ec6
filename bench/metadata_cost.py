"""What reading metadata and pages costs beside the text extraction, per corpus format.

`python -m bench.metadata_cost [--repeat N]` extracts each corpus document with
extract.extract_text (what a worker child runs), then times read_metadata + page_ends on
the same file and text, in this one process, and prints per format and for the whole
corpus: extraction ms, metadata ms (without the hash), sha256 ms, pages ms and the share
of the three in the extraction time.

The share is an upper bound on the cost against `scripts/bench` throughput: a job there
also pays for the upload, Redis, the guards and the result, which this leaves out. Each
figure is the median of --repeat runs per document; the first run of everything is a
warm-up (imports), not counted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial

from daemon.config import Settings
from daemon.documents.extract import extract_text
from daemon.documents.formats import FORMATS
from daemon.documents.guards import Limits, check_document
from daemon.documents.metadata import file_sha256, read_metadata
from daemon.documents.pages import page_ends
from devtools.corpus import corpus_documents


def _median_ms(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per document (median)")
    args = parser.parse_args(argv)

    limits = Limits.from_settings(Settings())
    rows: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
    reused: list[float] = []  # PDF metadata from the catalog the guards read already
    for doc in corpus_documents():
        fmt = FORMATS[doc.format]
        text = extract_text(doc.path, fmt.ext)  # warm-up, and the text the others read
        meta = read_metadata(doc.path, fmt, text)
        page_ends(doc.path, fmt, "", text, meta.values.get("pages"))
        extract_ms = _median_ms(partial(extract_text, doc.path, fmt.ext), args.repeat)
        # The hash apart: the api may already have it (the result cache's key).
        meta_ms = _median_ms(partial(read_metadata, doc.path, fmt, text, sha256="given"),
                             args.repeat)
        hash_ms = _median_ms(partial(file_sha256, doc.path), args.repeat)
        pages_ms = _median_ms(partial(page_ends, doc.path, fmt, "", text,
                                   meta.values.get("pages")), args.repeat)
        rows[fmt.ext].append((extract_ms, meta_ms, hash_ms, pages_ms))
        if fmt.ext == "pdf":
            checked = check_document(doc.path, fmt, limits)
            reused.append(_median_ms(partial(
                read_metadata, doc.path, fmt, text, sha256="given", checked=checked),
                args.repeat))

    print(f"{'format':8} {'docs':>4} {'extract ms':>11} {'metadata ms':>12} {'sha256 ms':>10} "
          f"{'pages ms':>9} {'share':>7}")
    totals = [0.0, 0.0, 0.0, 0.0]
    for ext in sorted(rows):
        sums = [sum(col) for col in zip(*rows[ext], strict=True)]
        totals = [a + b for a, b in zip(totals, sums, strict=True)]
        print(_line(ext, len(rows[ext]), *sums))
    print(_line("corpus", sum(len(r) for r in rows.values()), *totals))
    no_ocr = [sum(col) for col in zip(*(row for ext, r in rows.items() for row in r
                                         if FORMATS[ext].family != "ocr"), strict=True)]
    print(_line("no-OCR", sum(len(r) for e, r in rows.items() if FORMATS[e].family != "ocr"),
                *no_ocr))
    if reused:
        pdf = [sum(col) for col in zip(*rows["pdf"], strict=True)]
        corpus_then = totals[1] - pdf[1] + sum(reused) + totals[2] + totals[3]
        print(f"\nPDF metadata from the guards' catalog read instead of reading it again: "
              f"{sum(reused):.2f} ms for {len(reused)} PDFs (pdfminer: {pdf[1]:.2f} ms); "
              f"PDF share then {(sum(reused) + pdf[2] + pdf[3]) / pdf[0] * 100:.1f}%, "
              f"corpus share then {corpus_then / totals[0] * 100:.1f}%")


def _line(name: str, docs: int, extract_ms: float, meta_ms: float, hash_ms: float,
          pages_ms: float) -> str:
    share = (meta_ms + hash_ms + pages_ms) / extract_ms * 100 if extract_ms else 0.0
    return (f"{name:8} {docs:>4} {extract_ms:>11.1f} {meta_ms:>12.2f} {hash_ms:>10.2f} "
            f"{pages_ms:>9.2f} {share:>6.1f}%")


if __name__ == "__main__":
    main()
