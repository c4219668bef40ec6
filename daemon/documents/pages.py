"""The text of a document cut into its pages (PDF pages, PPTX slides).

The contract: pages are consecutive slices of the one text a job already gives, stored as
the offset where each page ends. So

    "".join(page_texts(text, ends)) == text                    (always, by construction)
    page_texts(text, ends)[n - 1] == text[ends[n - 2]:ends[n - 1]]  (page n, 1-based)

and the text clients get today never changes; a page is only a view of it. The
separator that ends a page belongs to that page: pdftotext and pdfminer end every PDF page
with a form feed (`\\f`), so a PDF page's text ends with `\\f`; textract joins PPTX runs
with a blank line, so a slide's text ends with the blank line that separates it from the
next slide. A page without text is an empty slice (or just its `\\f`), so empty pages
still count and page n is always the n-th page of the document.

Where the text carries no boundary that can be trusted, `page_ends` answers None (no
pages) rather than guess: a PDF whose form feeds do not match its page count, a PDF read
through OCR by textract (it joins the per-page outputs with nothing between them; see
`ocr_pdf`, which keeps the boundaries), a PPTX whose slides read here do not give back
textract's text exactly. Formats without pages (docx, odt, spreadsheets, mail, HTML, plain
text, images) give None as well.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from daemon.documents import slides
from daemon.documents.formats import Format
from daemon.documents.zipxml import PartRefused

FORM_FEED = "\f"


def page_ends(path: Path, fmt: Format, method: str, text: str,
              page_count: int | None = None) -> list[int] | None:
    """Where each page of `text` ends (offsets into it), or None where pages are unknown.

    `page_count` is the document's own page count when the caller has it (the metadata's
    `pages`, from pdfinfo): a PDF whose form feeds disagree with it gets no pages.
    """
    if fmt.ext == "pdf":
        if (method or fmt.default_method) == "tesseract":
            return None  # textract's OCR output has no page boundary: see ocr_pdf
        ends = form_feed_ends(text)
        if page_count is not None and len(ends) != page_count:
            return None
        return ends
    if fmt.ext == "pptx":
        return _pptx_ends(path, text)
    return None


def page_texts(text: str, ends: list[int]) -> list[str]:
    """The pages' texts: consecutive slices of `text` ending at `ends`."""
    starts = [0, *ends[:-1]]
    return [text[start:end] for start, end in zip(starts, ends, strict=True)]


def pages_json(text: str, ends: list[int]) -> list[dict]:
    """`[{"number": 1, "text": "..."}, ...]`, as a job's `pages` field gives them."""
    return [{"number": n, "text": t} for n, t in enumerate(page_texts(text, ends), 1)]


def page_text(text: str, ends: list[int], number: int) -> str | None:
    """Page `number` (1-based) of `text`, None when there is no such page."""
    if not 1 <= number <= len(ends):
        return None
    return text[ends[number - 2] if number > 1 else 0:ends[number - 1]]


def form_feed_ends(text: str) -> list[int]:
    """Pages that each end with a form feed; text after the last one is a last page."""
    ends, at = [], text.find(FORM_FEED)
    while at != -1:
        ends.append(at + 1)
        at = text.find(FORM_FEED, at + 1)
    if not ends or ends[-1] != len(text):
        ends.append(len(text))  # no form feed at all is one page, like any unpaged text
    return ends


# --- OCR of a PDF, keeping the page boundaries ------------------------------------------
def ocr_pdf(path: Path, **kwargs: str) -> tuple[str, list[int] | None]:
    """A scanned PDF's text through OCR and where each page ends.

    Does what textract's `method=tesseract` does (pdftoppm renders each page, tesseract
    reads each image in page order, the outputs are joined with nothing between them and
    decoded as textract decodes them), so the text is the same; it only remembers where
    each page's output ended. Raises what textract raises (ShellError for a failing tool),
    so extract.extract_text's error sorting applies when it calls this instead of
    textract.process(method="tesseract").
    """
    return ocr_text(_ocr_outputs(path, [], **kwargs))


def ocr_page(path: Path, number: int, **kwargs: str) -> bytes:
    """Page `number`'s raw OCR output, as `ocr_pdf` reads that page among all the others:
    pdftoppm renders only that page (`-f n -l n`, at the same defaults), tesseract reads
    it the way textract's image parser calls it. A scan's page tasks each run this; the
    job's text is then `ocr_text` of their outputs in page order."""
    outputs = _ocr_outputs(path, ["-f", str(number), "-l", str(number)], **kwargs)
    return b"".join(outputs)


def _ocr_outputs(path: Path, page_range: list[str], **kwargs: str) -> list[bytes]:
    """tesseract's output for each page pdftoppm renders, in page order."""
    from textract.parsers.image import Parser as TesseractParser

    temp_dir = tempfile.mkdtemp()
    try:
        TesseractParser().run(["pdftoppm", *page_range, os.fspath(path),
                               os.path.join(temp_dir, "conv")])
        # textract's order: the names pdftoppm gives (conv-01.ppm, ...) sorted
        return [TesseractParser().extract(os.path.join(temp_dir, name), **kwargs)
                for name in sorted(os.listdir(temp_dir))]
    finally:
        shutil.rmtree(temp_dir)


def ocr_text(outputs: list[bytes]) -> tuple[str, list[int] | None]:
    """The text textract gives for these per-page OCR outputs, and where each page ends.

    textract decodes the outputs joined, as one (its decoder guesses the encoding of the
    whole), so the text is decoded whole here too, and a page's end is placed only if the
    pages decoded one by one add up to it."""
    from textract.parsers.utils import BaseParser

    decoder = BaseParser()

    def as_textract_gives(raw: bytes) -> str:
        # textract.process encodes to UTF-8 ignoring what cannot be; extract_text decodes.
        return decoder.decode(raw).encode("utf-8", "ignore").decode("utf-8")

    text = as_textract_gives(b"".join(outputs))
    pages = [as_textract_gives(out) for out in outputs]
    if "".join(pages) != text:
        # A page decoded alone came out otherwise than within the whole (chardet saw
        # another encoding in it): the text stands, its pages cannot be placed.
        return text, None
    ends, end = [], 0
    for page in pages:
        end += len(page)
        ends.append(end)
    return text, ends


# --- PPTX slides ------------------------------------------------------------------------
def _pptx_ends(path: Path, text: str) -> list[int] | None:
    """Slide boundaries in textract's pptx text, from the slides' own XML, used only if
    the slides' runs give back `text` exactly. (When slides.read could vouch for the
    package, the extraction read the slides itself and its ends came with the text.)"""
    try:
        with zipfile.ZipFile(path) as zf:
            found = [slides.slide_runs(zf, name) for name in slides.slide_parts(zf)]
    except (PartRefused, zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError,
            RuntimeError, NotImplementedError):
        return None
    if slides.text(found) != text:
        return None
    return slides.ends(found)
