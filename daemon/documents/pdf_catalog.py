"""A PDF's trailer and catalog read in-process: its Info dictionary, /Lang and page count.

One read serves both the guards (the page count, before extraction) and the metadata
reader (after it): pdfminer reads the trailer and a handful of objects in about half a
millisecond, where starting pdfinfo costs 4 ms or more, as much as pdftotext on a small
PDF. fallback=False: a PDF with a broken xref table would make pdfminer scan the whole
file in Python; pdfinfo (C, under the guards' timeout) reads those instead, as it does
encrypted PDFs pdfminer cannot open.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # imported when a PDF is read: a worker without PDF jobs never loads it
    from pdfminer.pdfdocument import PDFDocument

_MAX_REFERENCE_HOPS = 32


class CatalogUnreadable(ValueError):
    """pdfminer cannot read the PDF's trailer or catalog; the message is ours, not the
    document's (it goes to logs)."""


class Catalog(NamedTuple):
    info: dict[str, Any]  # the newest trailer's Info dictionary, its values resolved
    lang: Any  # the catalog's /Lang as the file has it (a string is bytes)
    pages: int | None  # the page tree's /Count, when poppler would take it (else None)


def read_catalog(path: Path, data: bytes | None = None) -> Catalog:
    """The Info dictionary, /Lang and /Count of the PDF at `path` (read from `data`, its
    bytes, when the caller holds them), without rendering.

    Raises CatalogUnreadable when pdfminer cannot read them (a broken xref, a password,
    a reference loop, anything else its parser trips on)."""
    from pdfminer import pdftypes
    from pdfminer.pdfparser import PDFParser

    from daemon.documents.pdf_document import OffsetReadDocument

    # pdfminer's resolve1 follows references without a bound, and PDFDocument resolves the
    # trailer's /Root and /Info through it: `4 0 obj 4 0 R endobj` as /Info spins until the
    # job's deadline kills the worker, on a PDF pdftotext reads fine. Every pdfminer lookup
    # goes through pdftypes.resolve1 at call time, so it is swapped for a bounded one for
    # the length of this read (a worker child runs one job on one thread).
    unbounded, pdftypes.resolve1 = pdftypes.resolve1, _resolve
    try:
        with open(path, "rb") if data is None else io.BytesIO(data) as f:
            doc = OffsetReadDocument(PDFParser(f), fallback=False)
            # info[0] is the newest trailer's (pdfminer follows /Prev back from the end).
            info = {key: _resolve(value) for key, value in (doc.info[0] if doc.info
                                                             else {}).items()}
            count = _resolve(_resolve(doc.catalog.get("Pages") or {}).get("Count"))
            lang = _resolve(doc.catalog.get("Lang"))
            objects = _objects(doc)
    except CatalogUnreadable:
        raise
    except Exception as exc:  # whatever pdfminer raises, pdfinfo gets the PDF instead
        raise CatalogUnreadable(f"pdfminer cannot read the PDF "
                                f"({type(exc).__name__})") from exc
    finally:
        pdftypes.resolve1 = unbounded
    # Poppler (Catalog::getNumPages) takes a /Count from 1 up to the number of objects in
    # the file, and reads any other as no pages, which pdfinfo and pdftotext then report as
    # an error; such a count is left to pdfinfo, so the guards say what they said before.
    # A count is a whole number: `true` is an int to Python, and 3.0 is for pdfinfo to read.
    pages = count if type(count) is int and 1 <= count <= objects else None
    return Catalog(info, lang, pages)


def _objects(doc: PDFDocument) -> int:
    """The highest object number the xref sections hold, plus one: never more than the
    number of objects poppler counts (its xref table's size, free entries included)."""
    from pdfminer.pdfdocument import PDFXRef, PDFXRefStream

    most = 0
    for xref in doc.xrefs:
        if isinstance(xref, PDFXRefStream):  # its sections: (first number, entries)
            most = max([most, *(start + entries for start, entries in xref.ranges)])
        elif isinstance(xref, PDFXRef):
            most = max(most, max(xref.get_objids(), default=-1) + 1)
    return most


def _resolve(x: object, default: object = None) -> Any:
    """pdfminer's resolve1, giving up after _MAX_REFERENCE_HOPS references in a chain.

    Named and typed as resolve1, whose place it takes: a PDF object is whatever the file
    says it is."""
    from pdfminer.pdftypes import PDFObjRef

    for _ in range(_MAX_REFERENCE_HOPS):
        if not isinstance(x, PDFObjRef):
            return x
        x = x.resolve(default=default)
    raise CatalogUnreadable("a loop of indirect references")
