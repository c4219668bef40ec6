"""The benchmark's fixed workload and its documents: what every run measures.

The workload is fixed (WORKLOAD) so that runs on different days compare; QUICK is a
small one for the smoke test. The documents are the corpus's (read from its manifest as
tests/conftest.py reads it) and a tiny plain-text upload.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadgen import MIB
from devtools.corpus import CORPUS, corpus_documents
from devtools.multipart import multipart_body

# The project's copy sits beside the repository; a user's clone has none (--corpus DIR).
MANIFEST = "MANIFEST.tsv"
# Scanned: asked for with OCR in both arms, as tests/test_corpus.py does.
METHODS = {"textract-tests/pdf/ocr_text.pdf": "tesseract"}
# A few cheap formats (each through a different parser) for --quick and the leak phase.
LIGHT = {"txt", "csv", "json", "docx", "odt", "eml", "doc", "xls", "rtf", "pdf"}
KIB = 1024


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
    # The scaling table: generated plain text of each size, on a stack of each worker
    # count; per cell about scaling_bytes of documents, between these many jobs.
    scaling_sizes: tuple[int, ...] = (KIB, 100 * KIB, MIB, 16 * MIB)
    scaling_workers: tuple[int, ...] = (1, 2, 4)
    scaling_bytes: int = 256 * MIB
    scaling_jobs: tuple[int, int] = (24, 400)  # 24: three waves of in_flight at 16 MB

    def jobs_of_size(self, size: int) -> int:
        """Jobs in a scaling cell of documents of `size` bytes."""
        least, most = self.scaling_jobs
        return max(least, min(most, self.scaling_bytes // size))


WORKLOAD = Workload()
QUICK = Workload(passes=1, light_only=True, tiny_jobs=60, latency_jobs=20, upload_clients=4,
                 upload_mb=1, child_jobs=20, scaling_sizes=(KIB, 100 * KIB, MIB),
                 scaling_workers=(1, 2), scaling_bytes=4 * MIB, scaling_jobs=(8, 40))


def service_env(workers: int, work: Workload, fast_doc: bool = True) -> dict[str, str]:
    """The settings of every stack the benchmark starts."""
    return {"WORKER_PROCESSES": str(workers), "OMP_THREAD_LIMIT": "1",
            # Recycling would hide a leak from the memory phase (and costs one fork per
            # WORKER_MAX_JOBS jobs, nothing next to the rest).
            "WORKER_MAX_JOBS": "1000000",
            "FAST_DOC": "1" if fast_doc else "0",
            # The memory phase is one client with upload_clients uploads at once.
            "MAX_UPLOADS_PER_KEY": str(max(8, work.upload_clients))}


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


def has_corpus(corpus: Path) -> bool:
    return (corpus / MANIFEST).is_file()


def corpus_docs(light_only: bool = False, corpus: Path = CORPUS) -> list[Doc]:
    """Every supported corpus document, with the method the scanned ones are asked for."""
    docs = []
    for row in corpus_documents(corpus):
        if light_only and row.format not in LIGHT:
            continue
        kwargs = dict(row.kwargs)
        query = {"extension": kwargs["extension"]} if "extension" in kwargs else {}
        if row.id in METHODS:
            if light_only:
                continue
            kwargs["method"] = query["method"] = METHODS[row.id]
        docs.append(Doc(row.id, row.path, row.format, kwargs, query))
    return docs


def tiny_text(size: int) -> bytes:
    line = b"The quick brown fox jumps over the lazy dog. "
    return (line * (size // len(line) + 1))[:size - 1] + b"\n"


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()

