"""How a Tika request's upload is read and its type told: Tika's rules on the api's path.

The body is read by the api's own reader (same limits, memory budget and pacing; aiohttp
has already undone a gzip or deflate Content-Encoding). What differs from /v1:
- a multipart upload's file part may have any name (tika-client calls it `upload-file`);
- the file name comes from Content-Disposition (or Tika's File-Name header), and
  tika-python sends it as a Python bytes repr (`filename=b'x.pdf'`): the name inside is
  taken, and a name that says nothing usable is ignored;
- Content-Type is a hint, as in Tika (ignored when xml or octet-stream);
- the name, then the hint, then the content alone decide; a type nobody can tell is no
  error (Tika answers 200 with nothing): TypedOnly(None);
- the option headers become textractd's `method=` (see `tika_options`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

from aiohttp import hdrs, web
from aiohttp.multipart import content_disposition_filename, parse_content_disposition
from multidict import CIMultiDictProxy

from daemon.api.budget import MemoryBudget, Reservation
from daemon.api.middleware import ApiError
from daemon.api.uploads import Received, Upload, read_upload
from daemon.config import Settings
from daemon.documents import formats
from daemon.documents.formats import FORMATS, Format
from daemon.errors import EncryptedDocument, UnsupportedFormat

# tika-python without rfc6266: `'attachment; filename=%s' % os.path.basename(path.encode())`
_BYTES_REPR = re.compile(r"""^b(['"])(.*)\1$""", re.S)
# A value aiohttp's parser refuses (an unquoted name with spaces): taken up to the end.
_LOOSE_FILENAME = re.compile(r"""filename\s*=\s*["']?([^"';]+)""", re.I)
# Tika's X-Tika-PDFOcrStrategy values and the textractd method each comes to (PDF only).
OCR_STRATEGIES = {"no_ocr": "", "auto": "", "ocr_only": "tesseract",
                  "ocr_and_text": "tesseract", "ocr_and_text_extraction": "tesseract"}
# Where a MIME type names more than one extension, the one to use.
_PREFERRED_EXT = {"text/plain": "txt", "text/html": "html", "image/jpeg": "jpg",
                  "image/tiff": "tiff"}
_EXT_OF_MIME = {**{fmt.mime: ext for ext, fmt in reversed(FORMATS.items())},
                **_PREFERRED_EXT}
# Tika's name for a password-protected Office file, for /detect/stream.
ENCRYPTED_MIME = "application/x-tika-ooxml-protected"


class TypedOnly(Exception):
    """Raised by a Tika type check to end an upload once its type is known: nothing is
    queued. `fmt` None: no one can tell the type (Tika answers 200 with nothing)."""

    def __init__(self, fmt: Format | None, mime: str | None = None) -> None:
        super().__init__(mime or (fmt.mime if fmt else "application/octet-stream"))
        self.fmt = fmt
        self.mime = str(self)


class Refused(Exception):
    """Raised when the upload is refused before a job exists (a password-protected Office
    file): answered as a document that cannot be parsed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TikaOptions(NamedTuple):
    method: str  # textractd's `method=` for a PDF ("" the default)
    skip_ocr: bool  # X-Tika-OCRskipOcr: true


def tika_options(headers: CIMultiDictProxy[str]) -> TikaOptions:
    """What the X-Tika-* headers ask, as textractd can do it.

    X-Tika-PDFOcrStrategy: ocr_only / ocr_and_text -> method=tesseract, no_ocr and auto ->
    the default (pdftotext; textractd does not decide page by page). X-Tika-OCRskipOcr:
    true -> no OCR at all (an image gives no text). X-Tika-OCRLanguage and
    X-Tika-PDFextractInlineImages are accepted and have no effect (README).
    """
    raw = headers.get("X-Tika-PDFOcrStrategy", "").strip().lower()
    if raw and raw not in OCR_STRATEGIES:
        # Tika answers 400 for a header value its setter refuses.
        raise ApiError("bad_request", f"X-Tika-PDFOcrStrategy must be one of "
                                      f"{', '.join(OCR_STRATEGIES)}")
    skip_ocr = headers.get("X-Tika-OCRskipOcr", "").strip().lower() == "true"
    return TikaOptions("" if skip_ocr else OCR_STRATEGIES.get(raw, ""), skip_ocr)


async def read_tika_upload(request: web.Request, settings: Settings, budget: MemoryBudget,
                           share: Reservation | None) -> Received:
    """The api's reader, taking the first file part whatever its name, named as Tika
    names it (the part's name, then Content-Disposition, then File-Name)."""
    received = await read_upload(request, settings, budget, share, field=None)
    upload = received.files[0]
    name = upload.filename or _header_filename(request.headers)
    return Received([Upload(usable_filename(name), upload.data)], received.fields)


def _header_filename(headers: CIMultiDictProxy[str]) -> str | None:
    disposition = headers.get(hdrs.CONTENT_DISPOSITION)
    if disposition:
        _, params = parse_content_disposition(disposition)
        name = content_disposition_filename(params, "filename")
        if name:
            return name
        loose = _LOOSE_FILENAME.search(disposition)
        if loose:
            return loose.group(1).strip()
    return headers.get("File-Name") or None


def usable_filename(name: str | None) -> str | None:
    """`name` with a Python bytes repr around it undone (`b'x.pdf'` -> `x.pdf`)."""
    if not name:
        return None
    inner = _BYTES_REPR.match(name.strip())
    return inner.group(2) if inner else name


def hinted_ext(content_type: str | None) -> str | None:
    """The extension a Content-Type names, under Tika's rule: xml and octet-stream say
    nothing, nor does a multipart request's own type."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if not mime or mime == "application/octet-stream" or mime.endswith("/xml") \
            or mime.startswith("multipart/"):
        return None
    return _EXT_OF_MIME.get(mime)


def tell_format(filename: str | None, data: bytes | bytearray, hint: str | None) -> Format:
    """The format from the name, else the Content-Type hint, else the content alone; a
    name or hint the content contradicts is passed over, as Tika's detector does.

    Raises TypedOnly(None) when nothing tells, Refused for a password-protected file."""
    tries: list[tuple[str | None, str | None]] = []
    if formats.extension_of(filename) in FORMATS:
        tries.append((filename, None))
    if hint:
        tries.append((None, hint))
    tries.append((None, None))
    for name, declared in tries:
        try:
            return formats.detect_bytes(name, data, declared)
        except UnsupportedFormat:
            continue
        except EncryptedDocument as exc:
            raise Refused(EncryptedDocument.code, str(exc)) from exc
    raise TypedOnly(None)


TypeCheck = Callable[[web.Request, str | None, bytearray], tuple[Format, str, str]]


def tika_type_check(*, detect_only: bool = False) -> TypeCheck:
    """The upload path's type check for a Tika route (`detect_only`: end once typed)."""

    def check(request: web.Request, filename: str | None,
              data: bytearray) -> tuple[Format, str, str]:
        options = tika_options(request.headers)
        try:
            fmt = tell_format(filename, data, hinted_ext(request.headers.get(
                hdrs.CONTENT_TYPE)))
        except Refused:
            if detect_only:
                raise TypedOnly(None, ENCRYPTED_MIME) from None
            raise
        if detect_only or (options.skip_ocr and fmt.family == "ocr"):
            raise TypedOnly(fmt)
        method = options.method if options.method in fmt.methods else ""
        return fmt, method, formats.family_for(fmt.ext, method)

    return check
