"""A document's own metadata, read after its text was extracted.

`read_metadata` answers the keys that exist for the document, out of: content_type (the
detected MIME type), pages, title, author, subject, description, keywords, created,
modified (ISO 8601 UTC), creator (the application that made it), producer (PDF: what wrote
the PDF), language (only when the document declares one), chars, words, sha256.

`pages` is the document's page count where it has one: counted for PDF (the page tree's
/Count, or pdfinfo's count) and PPTX (its slides, as pages.page_ends cuts them);
declared by the writing application for docx, odt and doc (their last layout; those
formats have no page boundaries in their text). `chars` is len(text), `words` the count
of whitespace-separated tokens in it.

It never raises. A value that cannot be read exactly (a malformed date, a page count that
is not a number) is left out and named in `dropped` with a reason, for the caller to log;
a source that cannot be read at all (a damaged container, pdfinfo failing) gives `error`
and the keys every document has: content_type, chars, words, sha256. Values are never put
in `dropped` or `error`: they are the document's data and stay out of logs.

Cost is bounded: PDF through pdfminer's trailer and catalog only, as the guards read them
before extraction and hand over (no fallback scan of a broken file: pdfinfo, the C tool
the guards fall back on, reads those under their timeout); ZIP-based formats read one or
two small XML parts (zipxml: size cap, no DTD, no entity expansion); EML, HTML, RTF and
PS read at most headers.HEAD_BYTES of the file; OLE2 (doc, xls, msg) reads the property
streams only.

Sources, per format (one module each: pdf, containers, ole, headers; values.Found
collects what they find):
  pdf                Info dictionary, /Lang, page count (pdfminer; pdfinfo for the rest)
  docx, xlsx, pptx   docProps/core.xml + docProps/app.xml; pptx pages = its slides
  odt, ods           meta.xml (pages: odt's page-count statistic)
  epub               the OPF package named by META-INF/container.xml
  eml                headers: Subject, From, Date, Keywords, Content-Language
  msg                the message's MAPI properties (subject, sender, submit time)
  doc, xls           the OLE SummaryInformation stream
  html, htm          <title>, <meta name=author|description|keywords>, <html lang>
  rtf                the {\\info} group
  ps                 the DSC header comments (%%Title, %%Creator, %%For, %%Pages, ...)
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import olefile

from daemon.documents.formats import Format
from daemon.documents.guards import Checked
from daemon.documents.metadata import containers, headers, ole, pdf
from daemon.documents.metadata.values import Found, MetadataUnreadable
from daemon.documents.zipxml import PartRefused

# A document's parsed container, from the extraction to the reader of its format.
Container: TypeAlias = zipfile.ZipFile | olefile.OleFileIO


class Metadata(NamedTuple):
    values: dict[str, Any]  # the job's `metadata` object
    dropped: dict[str, str]  # key -> why it was left out (never the value)
    error: str | None  # why the document's own metadata could not be read at all


def read_metadata(path: Path, fmt: Format, text: str, *, sha256: str | None = None,
                  checked: Checked | None = None, slides: int | None = None,
                  container: Container | None = None) -> Metadata:
    """The metadata of the document at `path` whose extracted text is `text`.

    `sha256`: the document's hash when the caller has it already (not computed again).
    `checked`: what the guards read of it: a PDF's catalog (or why pdfminer could not read
    it) and pdfinfo's output when they ran it; the PDF is not read again for those.
    `container`: the document's ZIP or OLE file as the extraction had it parsed
    (extract.Extraction): not parsed again.
    `slides`: a pptx's slide count when the extraction walked its slides (documents/
    slides.py); they are not listed again.
    """
    found = Found()
    error = None
    reader = _READERS.get(fmt.ext)
    given: dict[str, Any] = {}  # what the caller read already, in the reader's keywords
    if fmt.ext == "pdf" and checked is not None:
        given = {"catalog": checked.catalog, "pdfinfo_output": checked.pdfinfo}
    elif container is not None:
        given["container"] = container  # containers.py, ole.read_msg
    if fmt.ext == "pptx" and slides is not None:
        given["slides"] = slides
    if reader is not None:
        try:
            reader(path, found, **given)
        except Exception as exc:  # a damaged document's metadata is optional; its text is not
            # Only messages we wrote: a parser's may quote the document.
            error = (str(exc) if isinstance(exc, PartRefused | MetadataUnreadable)
                     else f"{type(exc).__name__} while reading the {fmt.ext} metadata")
    values: dict[str, Any] = {"content_type": fmt.mime, **found.values,
                              "chars": len(text), "words": len(text.split())}
    try:
        values["sha256"] = sha256 or file_sha256(path)
    except OSError as exc:
        error = error or f"cannot hash the document: {exc.strerror}"
    return Metadata(values, found.dropped, error)


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of the file, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# Each is called as reader(path, found), with keywords of its own (container, slides).
_READERS: dict[str, Callable[..., None]] = {
    "pdf": pdf.read_pdf,
    "docx": containers.read_ooxml, "xlsx": containers.read_ooxml,
    "pptx": containers.read_ooxml,
    "odt": containers.read_odf, "ods": containers.read_odf, "epub": containers.read_epub,
    "msg": ole.read_msg,
    "doc": lambda path, found: ole.read_ole_office(path, found, has_pages=True),
    "xls": lambda path, found: ole.read_ole_office(path, found, has_pages=False),
    "eml": headers.read_eml, "html": headers.read_html, "htm": headers.read_html,
    "rtf": headers.read_rtf, "ps": headers.read_ps,
}
