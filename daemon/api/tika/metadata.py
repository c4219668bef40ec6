"""A job as Tika's JSON: every value a string or a list of strings, Tika's key names.

What tika-client requires in every object: `Content-Type` and `X-TIKA:Parsed-By`. Text
goes under `X-TIKA:content`. The job's `metadata` (daemon.documents.metadata: content_type,
pages, title, author, ...) is mapped to the keys Tika's parsers write for the same facts;
a job without it (or a document with little) still gets the keys every answer has.
"""

from __future__ import annotations

import csv
import io
from typing import NamedTuple

from daemon.documents.formats import FORMATS

TikaValue = str | list[str]
CONTENT = "X-TIKA:content"
PARSED_BY = "X-TIKA:Parsed-By"
CONTAINER_EXCEPTION = "X-TIKA:EXCEPTION:container_exception"
PARSER = "textractd"  # in X-TIKA:Parsed-By, where Tika names its Java parsers

# The job's metadata key -> Tika's keys for the same fact (Dublin Core, XMP, Tika's own).
_KEYS: dict[str, tuple[str, ...]] = {
    "title": ("dc:title",),
    "author": ("dc:creator",),
    "subject": ("dc:subject",),
    "description": ("dc:description",),
    "keywords": ("meta:keyword",),
    "created": ("dcterms:created",),
    "modified": ("dcterms:modified",),
    "creator": ("xmp:CreatorTool",),
    "producer": ("pdf:producer",),
    "language": ("dc:language",),
    "pages": ("xmpTPg:NPages",),
    "chars": ("meta:character-count",),
    "words": ("meta:word-count",),
    "sha256": ("X-TIKA:digest:SHA256",),
}
# Tika's PDFParser also writes the Info dictionary under pdf:docinfo:*.
_PDF_DOCINFO = {"title": "pdf:docinfo:title", "author": "pdf:docinfo:creator",
                "subject": "pdf:docinfo:subject", "keywords": "pdf:docinfo:keywords",
                "created": "pdf:docinfo:created", "modified": "pdf:docinfo:modified",
                "creator": "pdf:docinfo:creator_tool", "producer": "pdf:docinfo:producer"}


class Parsed(NamedTuple):
    """What one Tika request came to, the input of every answer."""

    content_type: str  # the MIME type ("application/octet-stream": no one can tell)
    text: str  # "" when nothing was extracted
    job: dict | None  # the finished job; None when nothing was queued
    failure: tuple[str, str] | None = None  # (error code, message): cannot be parsed
    page_ends: list[int] | None = None  # where each page of `text` ends, when known


def tika_metadata(parsed: Parsed) -> dict[str, TikaValue]:
    """The metadata object of `parsed` without its content, in Tika's key names."""
    job = parsed.job or {}
    facts = job.get("metadata") or {}
    out: dict[str, TikaValue] = {"Content-Type": str(facts.get("content_type")
                                                     or parsed.content_type)}
    fmt = FORMATS.get(job.get("format") or "")
    out[PARSED_BY] = [PARSER, f"textract.parsers.{fmt.ext}_parser"] if fmt else [PARSER]
    if job.get("bytes") is not None:
        out["Content-Length"] = str(job["bytes"])
    if job.get("filename"):
        out["resourceName"] = str(job["filename"])
    if job.get("duration_ms") is not None:
        out["X-TIKA:parse_time_millis"] = str(round(job["duration_ms"]))
    for name, value in facts.items():
        if value is None or value == "" or name not in _KEYS:
            continue
        for key in _KEYS[name]:
            out[key] = _string(value)
        if fmt is not None and fmt.ext == "pdf" and name in _PDF_DOCINFO:
            out[_PDF_DOCINFO[name]] = _string(value)
    if "xmpTPg:NPages" not in out and parsed.page_ends:
        out["xmpTPg:NPages"] = str(len(parsed.page_ends))
    if parsed.failure is not None:
        code, message = parsed.failure
        # textractd's own code and message; never a stack trace.
        out[CONTAINER_EXCEPTION] = f"textractd {code}: {message}"
    return out


def with_content(metadata: dict[str, TikaValue], content: str | None,
                 handler: str) -> dict[str, TikaValue]:
    """`metadata` with the content under X-TIKA:content (none for handler `ignore`)."""
    if content is None:
        return metadata
    return {**metadata, "X-TIKA:content_handler": _HANDLER_NAMES[handler], CONTENT: content}


_HANDLER_NAMES = {"text": "ToTextContentHandler", "html": "ToHTMLContentHandler",
                  "xml": "ToXMLContentHandler"}


def as_csv(metadata: dict[str, TikaValue]) -> str:
    """One row per key, the key first then its values (Tika's CSV for /meta)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, dialect="excel")
    for key, value in metadata.items():
        writer.writerow([key, *(value if isinstance(value, list) else [value])])
    return buffer.getvalue()


def _string(value: object) -> TikaValue:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return str(value)
