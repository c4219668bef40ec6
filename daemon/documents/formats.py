"""The formats textractd accepts and how a document's type is decided.

The type comes from the content's magic bytes checked against the name's extension (or an
explicit `?extension=`): textract routes on the extension alone, so a PNG named `.pdf`
would reach pdftotext and fail in a confusing way; we refuse it up front instead.
Filenames are hostile data here: they are only ever parsed, never used as paths.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import DocumentError, EncryptedDocument, UnsupportedFormat

HEAD_SIZE = 8192  # how much of a document the magic-byte checks look at


@dataclass(frozen=True)
class Format:
    ext: str  # textract's extension, no dot
    family: str  # extractor family: the circuit-breaker unit
    methods: tuple[str, ...]  # valid `method=` values, default first; () = default only
    mime: str

    @property
    def default_method(self) -> str | None:
        return self.methods[0] if self.methods else None


class InvalidMethod(DocumentError):
    """Raised when `method=` is not one textract supports for the format."""

    code = "invalid_method"


def _formats(family: str, mimes: dict[str, str]) -> dict[str, Format]:
    return {ext: Format(ext, family, (), mime) for ext, mime in mimes.items()}


_OOXML = "application/vnd.openxmlformats-officedocument."
_ODF = "application/vnd.oasis.opendocument."
FORMATS: dict[str, Format] = {
    "pdf": Format("pdf", "pdf", ("pdftotext", "pdfminer", "tesseract"), "application/pdf"),
    **_formats("ocr", {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
                       "gif": "image/gif", "tif": "image/tiff", "tiff": "image/tiff"}),
    **_formats("office", {"doc": "application/msword"}),
    **_formats("rtf", {"rtf": "application/rtf"}),
    **_formats("postscript", {"ps": "application/postscript"}),
    **_formats("python", {
        "csv": "text/csv", "tsv": "text/tab-separated-values", "psv": "text/plain",
        "txt": "text/plain", "json": "application/json", "html": "text/html",
        "htm": "text/html", "eml": "message/rfc822", "epub": "application/epub+zip",
        "msg": "application/vnd.ms-outlook", "xls": "application/vnd.ms-excel",
        "docx": _OOXML + "wordprocessingml.document",
        "pptx": _OOXML + "presentationml.presentation",
        "xlsx": _OOXML + "spreadsheetml.sheet",
        "odt": _ODF + "text", "ods": _ODF + "spreadsheet",
    }),
}

IMAGE_EXTS = frozenset({"png", "jpg", "jpeg", "gif", "tif", "tiff"})
ZIP_EXTS = frozenset({"docx", "xlsx", "pptx", "odt", "ods", "epub"})
OLE_EXTS = frozenset({"doc", "xls", "msg"})
TEXT_EXTS = frozenset({"txt", "csv", "tsv", "psv", "json", "html", "htm", "eml"})

# Content kinds whose FORMATS key differs (used when the content alone decides).
_KIND_TO_EXT = {"jpeg": "jpg", "text": "txt"}
_DESCRIPTIONS = {
    "pdf": "a PDF document", "ps": "a PostScript document", "rtf": "an RTF document",
    "png": "a PNG image", "jpeg": "a JPEG image", "gif": "a GIF image",
    "tiff": "a TIFF image", "zip": "a ZIP archive not recognised as docx/xlsx/pptx/odt/ods/epub",
    "docx": "a Word (docx) document", "xlsx": "an Excel (xlsx) workbook",
    "pptx": "a PowerPoint (pptx) presentation", "odt": "an OpenDocument text (odt)",
    "ods": "an OpenDocument spreadsheet (ods)", "epub": "an EPUB book",
    "ole": "an OLE2 compound file (legacy Office or Outlook) of undetermined type",
    "doc": "a Word 97-2003 (doc) document", "xls": "an Excel 97-2003 (xls) workbook",
    "msg": "an Outlook (msg) message", "ppt": "a PowerPoint 97-2003 (ppt) presentation",
    "ole-encrypted": "a password-protected Office document",
    "text": "plain text", "html": "HTML text", "binary": "binary data of an unknown type",
}
_AUDIO = frozenset({"mp3", "ogg", "wav", "flac", "m4a"})

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "pdf"), (b"%!PS", "ps"), (b"{\\rtf", "rtf"),
    (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"), (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"), (b"PK\x03\x04", "zip"),
)
_ZIP_PARTS = {b"word/document.xml": "docx", b"xl/workbook.xml": "xlsx",
              b"ppt/presentation.xml": "pptx"}
_ODF_MIMETYPES = {b"application/vnd.oasis.opendocument.text": "odt",
                  b"application/vnd.oasis.opendocument.spreadsheet": "ods",
                  b"application/epub+zip": "epub"}
_EXT_RE = re.compile(r"[a-z0-9]{1,10}")
_SEPARATORS = re.compile(r"[/\\]")


# --- the table ------------------------------------------------------------------------
def supported_formats() -> list[dict]:
    """The table as `GET /v1/formats` returns it."""
    return [
        {"ext": f.ext, "family": f.family, "methods": list(f.methods), "mime": f.mime,
         "default_method": f.default_method}
        for f in sorted(FORMATS.values(), key=lambda f: f.ext)
    ]


def family_for(ext: str, method: str | None = None) -> str:
    """The extractor family (breaker unit) that handles `ext` with `method`."""
    fmt = FORMATS.get(_normalise_ext(ext) or "")
    if fmt is None:
        raise UnsupportedFormat(f"extension {safe_display_name(ext)[:20]!r} is not supported")
    if not method or method == fmt.default_method:
        return fmt.family
    if method not in fmt.methods:
        valid = ", ".join(fmt.methods) or "none (leave method out)"
        raise InvalidMethod(f"method {safe_display_name(method)[:40]!r} is not supported "
                            f"for .{fmt.ext}; valid methods: {valid}")
    return {"tesseract": "ocr", "pdfminer": "python"}.get(method, fmt.family)


# --- names ----------------------------------------------------------------------------
def extension_of(filename: str | bytes | None) -> str | None:
    """The final extension of a (hostile) filename: lowercase [a-z0-9]{1,10}, or None."""
    if not filename:
        return None
    if isinstance(filename, bytes):
        filename = filename.decode("utf-8", "replace")
    base = _SEPARATORS.split(filename)[-1].rstrip(" .")
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:  # ".bashrc" has no extension, as for pathlib
        return None
    return _normalise_ext(ext)


def _normalise_ext(ext: str | None) -> str | None:
    ext = (ext or "").removeprefix(".")
    if not ext.isascii():  # non-ASCII letters may lowercase to ASCII ones ("K" kelvin)
        return None
    ext = ext.lower()
    return ext if _EXT_RE.fullmatch(ext) else None


def safe_display_name(name: str | bytes | None) -> str:
    """`name` made safe to store, log or put in a header: no directories, only printables."""
    if not name:
        return ""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    base = _SEPARATORS.split(name)[-1]
    # isprintable() is False for controls, NUL, lone surrogates and bidi overrides alike.
    base = "".join(ch if ch.isprintable() else "_" for ch in base).strip()
    if base in {".", ".."}:
        return ""
    if len(base) > 255:  # keep the extension: it is the useful part of a long name
        stem, dot, ext = base.rpartition(".")
        base = stem[: 254 - len(ext)] + "." + ext if dot and len(ext) <= 16 else base[:255]
    return base


# --- detection ------------------------------------------------------------------------
def detect_bytes(filename: str | None, data: bytes | bytearray, declared_ext: str | None = None
                 ) -> Format:
    """The format of a document from its bytes and its name (or `declared_ext`).

    The first HEAD_SIZE bytes decide; ZIP and OLE2 containers are opened when their head
    does not tell. Raises UnsupportedFormat when the content is unknown or contradicts
    the extension, EncryptedDocument for a password-protected Office file.
    """
    # bytes(): the head is hashed (dict look-ups); a bytearray slice could not be.
    return _decide(filename, bytes(data[:HEAD_SIZE]), declared_ext, data)


def _decide(filename: str | None, head: bytes, declared: str | None,
            path: Path | bytes | bytearray | None) -> Format:
    if declared:
        ext = _normalise_ext(declared)
        if ext is None or ext not in FORMATS:
            raise UnsupportedFormat(_unsupported_ext(declared))
        said = f"the extension parameter says .{ext}"
    else:
        ext = extension_of(filename)
        said = f"the file name says .{ext}"
    kind = _sniff(head, path)
    if kind == "ole-encrypted" and (ext is None or ext in ZIP_EXTS | OLE_EXTS):
        raise EncryptedDocument("the document is a password-protected Office file; "
                                "send it decrypted")
    if ext in FORMATS:
        if _compatible(ext, kind, head):
            return FORMATS[ext]
        raise UnsupportedFormat(f"{said} but the content looks like {_DESCRIPTIONS[kind]}")
    if kind in ("text", "html") and ext is not None:
        # Any text would "work" as txt, but accepting .xml or .py silently hides mistakes.
        raise UnsupportedFormat(f"{_unsupported_ext(ext)}; send extension=txt to extract "
                                "it as plain text")
    found = _KIND_TO_EXT.get(kind, kind)
    if found in FORMATS:
        return FORMATS[found]
    if ext is not None:
        raise UnsupportedFormat(f"{_unsupported_ext(ext)} and the content looks like "
                                f"{_DESCRIPTIONS[kind]}")
    raise UnsupportedFormat(f"the content looks like {_DESCRIPTIONS[kind]}; if it is a "
                            "supported format, give the file its extension or send "
                            "extension= (GET /v1/formats)")


def _unsupported_ext(ext: str) -> str:
    shown = safe_display_name(ext)[:20]
    if (_normalise_ext(ext) or "") in _AUDIO:
        return f"extension {shown!r} is not supported: audio is out of scope"
    return f"extension {shown!r} is not supported (GET /v1/formats lists the supported ones)"


def _compatible(ext: str, kind: str, head: bytes) -> bool:
    if ext in IMAGE_EXTS:
        # tesseract reads any of these by content: the corpus' .tiff files are PNGs.
        return kind in ("png", "jpeg", "gif", "tiff")
    if ext == "pdf":  # readers accept junk before the header within the first KB
        return kind == "pdf" or b"%PDF-" in head[:1024]
    if ext in ZIP_EXTS:
        return kind in ("zip", ext)
    if ext in OLE_EXTS:
        return kind in ("ole", ext)
    if ext in TEXT_EXTS:
        return kind in ("text", "html")
    return kind == ext


def _sniff(head: bytes, path: Path | bytes | bytearray | None) -> str:
    """A content kind: a key of _DESCRIPTIONS."""
    kind = next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)
    if kind is None:
        if b"\x00" in head:
            return "binary"
        start = head.removeprefix(b"\xef\xbb\xbf").lstrip()[:20].lower()
        return "html" if start.startswith((b"<!doctype html", b"<html")) else "text"
    if kind == "zip":
        inner = _zip_kind_from_head(head)
        if inner is None and path is not None:
            inner = _zip_kind_from_file(path)
        return inner or "zip"
    if kind == "ole":
        inner = _ole_kind(_ole_names_in_head(head))
        if inner is None and path is not None:
            inner = _ole_kind_from_file(path)
        return inner or "ole"
    return kind


# --- inside ZIP containers -------------------------------------------------------------
def _zip_kind_from_head(head: bytes) -> str | None:
    # ODF and EPUB store an uncompressed `mimetype` entry first, on purpose for sniffing.
    if len(head) >= 38 and head[26:28] == b"\x08\x00" and head[30:38] == b"mimetype":
        method, size = struct.unpack_from("<H", head, 8)[0], struct.unpack_from("<I", head, 18)[0]
        start = 30 + 8 + struct.unpack_from("<H", head, 28)[0]
        if method == 0:
            kind = _ODF_MIMETYPES.get(head[start:start + min(size, 100)].strip())
            if kind:
                return kind
    kinds = {kind for part, kind in _ZIP_PARTS.items() if part in head}
    return kinds.pop() if len(kinds) == 1 else None


def _zip_kind_from_file(path: Path | bytes | bytearray) -> str | None:
    try:
        with zipfile.ZipFile(io.BytesIO(path) if isinstance(path, bytes | bytearray)
                             else path) as zf:
            names = set(zf.namelist())
            if "mimetype" in names:
                with zf.open("mimetype") as f:
                    kind = _ODF_MIMETYPES.get(f.read(100).strip())
                if kind:
                    return kind
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, NotImplementedError,
            EOFError):
        return None  # a broken container: the extension decides, the guards report it
    kinds = {kind for part, kind in _ZIP_PARTS.items() if part.decode() in names}
    return kinds.pop() if len(kinds) == 1 else None


# --- inside OLE2 compound files ----------------------------------------------------------
def _ole_kind(names: set[str]) -> str | None:
    if "EncryptedPackage" in names:
        return "ole-encrypted"
    kinds = set()
    if any(n.startswith(("__substg1.0_", "__properties_version1.0")) for n in names):
        kinds.add("msg")
    if "WordDocument" in names:
        kinds.add("doc")
    if names & {"Workbook", "Book"}:
        kinds.add("xls")
    if "PowerPoint Document" in names:
        kinds.add("ppt")
    return kinds.pop() if len(kinds) == 1 else None


def _ole_names_in_head(head: bytes) -> set[str]:
    """Names of the directory entries that happen to lie in `head`.

    Entries are 128 bytes, aligned on 128 after the 512-byte header: a 64-byte UTF-16LE
    name, its byte length (with the NUL) and the entry type (1 storage, 2 stream, 5 root).
    """
    names = set()
    for off in range(512, len(head) - 127, 128):
        size, kind = struct.unpack_from("<HB", head, off + 64)
        if kind in (1, 2, 5) and 2 <= size <= 64 and size % 2 == 0:
            raw = head[off:off + size - 2]
            if head[off + size - 2:off + size] == b"\x00\x00":
                name = raw.decode("utf-16-le", "replace")
                if name.isprintable():
                    names.add(name)
    return names


def _ole_kind_from_file(path: Path | bytes | bytearray) -> str | None:
    try:
        import olefile  # a dependency of textract (through extract-msg)
    except ImportError:
        return None
    try:
        source = bytes(path) if isinstance(path, bytes | bytearray) else str(path)
        with olefile.OleFileIO(source) as ole:
            # Root-level entries only: a doc can embed an xls (and its Workbook stream).
            names = {p[0] for p in ole.listdir(streams=True, storages=True) if len(p) == 1}
    except Exception:  # olefile raises many kinds on broken input; the guards judge those
        return None
    return _ole_kind(names)
