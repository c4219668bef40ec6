"""PDF metadata: the Info dictionary, /Lang and the page count."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from daemon.documents import dates
from daemon.documents.guards import PDFINFO_TIMEOUT
from daemon.documents.metadata.values import Found, MetadataUnreadable

_PDFINFO_KEYS = {"Title": "title", "Subject": "subject", "Keywords": "keywords",
                 "Author": "author", "Creator": "creator", "Producer": "producer"}
# Every field pdfinfo prints: a line starting with another word continues the value above
# (a title may hold a newline).
_PDFINFO_FIELD = re.compile(
    r"(Title|Subject|Keywords|Author|Creator|Producer|CreationDate|ModDate|Custom Metadata|"
    r"Metadata Stream|Tagged|UserProperties|Suspects|Form|JavaScript|Pages|Encrypted|"
    r"Page size|Page rot|File size|Optimized|PDF version|Page +\d+ size|Page +\d+ rot):"
    r"[ ]?(.*)")


def read_pdf(path: Path, found: Found) -> None:
    """The Info dictionary, /Lang and page count, through pdfminer without rendering.

    pdfminer first: it reads the trailer and a handful of objects in about a millisecond,
    where starting pdfinfo costs 5-20 ms, as much as pdftotext itself on a small PDF.
    fallback=False: a PDF with a broken xref table would make pdfminer scan the whole
    file in Python; pdfinfo (C, under the guards' timeout) reads those instead, as it does
    encrypted PDFs pdfminer cannot open.
    """
    from pdfminer import pdftypes
    from pdfminer.pdfdocument import PDFDocument
    from pdfminer.pdfparser import PDFParser
    from pdfminer.utils import decode_text

    # pdfminer's resolve1 follows references without a bound, and PDFDocument resolves the
    # trailer's /Root and /Info through it: `4 0 obj 4 0 R endobj` as /Info spins until the
    # job's deadline kills the worker, over metadata, on a PDF pdftotext read fine. Every
    # pdfminer lookup goes through pdftypes.resolve1 at call time, so it is swapped for a
    # bounded one for the length of this read (a worker child runs one job on one thread).
    unbounded, pdftypes.resolve1 = pdftypes.resolve1, _resolve
    try:
        with open(path, "rb") as f:
            doc = PDFDocument(PDFParser(f), fallback=False)
            # info[0] is the newest trailer's (pdfminer follows /Prev back from the end).
            info = {key: _resolve(value) for key, value in (doc.info[0] if doc.info
                                                             else {}).items()}
            pages = _resolve(_resolve(doc.catalog.get("Pages") or {}).get("Count"))
            lang = _resolve(doc.catalog.get("Lang"))
    except Exception:
        read_pdf_pdfinfo(path, found)
        return
    finally:
        pdftypes.resolve1 = unbounded

    def string(value: object) -> str | None:
        return decode_text(value) if isinstance(value, bytes) else None

    for field, key in _PDFINFO_KEYS.items():
        found.text(key, string(info.get(field)))
    for field, key in (("CreationDate", "created"), ("ModDate", "modified")):
        if field in info:
            found.date(key, string(info[field]) or "?", dates.pdf_date)
    found.text("language", string(lang))
    if isinstance(pages, int):
        found.count("pages", pages)
    else:
        read_pdf_pdfinfo(path, found)  # no /Count: pdfinfo walks the page tree


_MAX_REFERENCE_HOPS = 32


def _resolve(x: object, default: object = None) -> Any:
    """pdfminer's resolve1, giving up after _MAX_REFERENCE_HOPS references in a chain.

    Named and typed as resolve1, whose place it takes: a PDF object is whatever the file
    says it is."""
    from pdfminer.pdftypes import PDFObjRef

    for _ in range(_MAX_REFERENCE_HOPS):
        if not isinstance(x, PDFObjRef):
            return x
        x = x.resolve(default=default)
    raise MetadataUnreadable("a loop of indirect references")


def read_pdf_pdfinfo(path: Path, found: Found) -> None:
    proc = subprocess.run(["pdfinfo", "-rawdates", "-enc", "UTF-8", str(path.resolve())],
                          capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=PDFINFO_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise MetadataUnreadable(f"pdfinfo exited with {proc.returncode}")
    parse_pdfinfo(proc.stdout, found)


def parse_pdfinfo(output: bytes, found: Found) -> None:
    """The fields of `pdfinfo -rawdates -enc UTF-8` output, into `found`."""
    fields: dict[str, list[list[str]]] = {}
    current: list[str] | None = None
    for line in output.decode("utf-8", "replace").split("\n"):
        match = _PDFINFO_FIELD.fullmatch(line)
        if match:
            current = [match.group(2)]
            fields.setdefault(match.group(1), []).append(current)
        elif current is not None:
            current.append(line)
    # The first of each Info field is pdfinfo's own (a forged "Author:" line inside a title
    # comes later, and only says what the document could have said anyway); the last Pages
    # line is pdfinfo's (it follows every document-controlled field), as the guards read it.
    first = {key: "\n".join(lines[0]) for key, lines in fields.items()}
    for field, key in _PDFINFO_KEYS.items():
        found.text(key, first.get(field))
    found.date("created", first.get("CreationDate"), dates.pdf_date)
    found.date("modified", first.get("ModDate"), dates.pdf_date)
    if "Pages" in fields:
        found.count("pages", "\n".join(fields["Pages"][-1]).strip())
