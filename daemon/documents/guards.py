"""Bomb guards: cheap checks a worker runs before textract sees a document.

Most read only headers (ZIP central directory, image headers and GIF block lengths, a
PDF's trailer and catalog, or pdfinfo's summary and page boxes), so they take milliseconds
and never allocate in proportion to what a document claims to hold. Two read the
document through, at C speed and with early exits, because the danger is in the body:
HTML's nesting (markup.py) and a PDF's drawing instructions (pdf_content.py, inflating a
megabyte at a time).
"""

from __future__ import annotations

import codecs
import functools
import io
import math
import os
import re
import struct
import subprocess
import zipfile
import zlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO, NamedTuple

from daemon.config import Settings
from daemon.documents import markup, pdf_content
from daemon.documents.formats import IMAGE_EXTS, ZIP_EXTS, Format
from daemon.documents.pdf_catalog import Catalog, CatalogUnreadable, read_catalog
from daemon.documents.redact import without_paths
from daemon.errors import CorruptDocument, DocumentTooComplex, EncryptedDocument

PDFINFO_TIMEOUT = 10.0
# pdfinfo as the metadata reader parses it (metadata.pdf.parse_pdfinfo): raw dates, UTF-8.
PDFINFO_METADATA_ARGS = ("pdfinfo", "-rawdates", "-enc", "UTF-8")
# pdfminer parses an xref table in Python at about 10 us an entry, where pdfinfo takes 1:
# a table holds at most one entry per 20 bytes, so above this size a catalog read could
# take longer than pdfinfo (and a page-count bomb is mostly its xref table). 512 KB bounds
# the read at about a quarter of a second; real PDFs this small take 1 ms.
CATALOG_READ_BYTES = 512 * 1024
XML_SCAN_BYTES = 64 * 1024  # how far into each ZIP entry the DTD check looks
RATIO_FLOOR = 1024 * 1024  # smaller entries cannot hurt, whatever their ratio
_MAX_JPEG_SEGMENTS = 4096
_MORE = "more"  # _xml_verdict: needs more bytes to decide
HTML_EXTS = frozenset({"html", "htm"})


@dataclass(frozen=True)
class Limits:
    max_zip_entries: int
    max_unzipped_bytes: int
    max_compression_ratio: int
    max_image_pixels: int
    max_pdf_pages: int  # also bounds the pages of a multi-page TIFF and GIF frames
    max_ocr_pixels: int
    max_text_bytes: int
    max_nesting_depth: int
    max_nesting_work: int
    max_pdf_content_bytes: int
    max_pdf_state_depth: int
    max_pdf_path_segments: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits of `settings` (defaults live in config.py only)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


class Checked(NamedTuple):
    """What the guards read of a document that passed them, for the steps after."""

    pages: int | None = None  # a PDF's page count as poppler reads it (pdftoppm's pages)
    # A PDF's trailer and catalog as the guard read them (the metadata reader's too), or
    # why pdfminer could not; None when the guard did not try (OCR, a large PDF, other
    # formats).
    catalog: Catalog | CatalogUnreadable | None = None
    # The stdout of the guard's `pdfinfo -rawdates -enc UTF-8` when it ran one (pdfminer
    # could not count the pages, or the PDF is large): the metadata reader parses it
    # rather than start pdfinfo a second time.
    pdfinfo: bytes | None = None
    # A ZIP-based document's container as the guard opened it over the document's bytes:
    # the extraction and the metadata read its parts without reading the file and its
    # central directory again.
    container: zipfile.ZipFile | None = None


def check_document(path: Path, fmt: Format, limits: Limits, method: str = "",
                   data: bytes | None = None) -> Checked:
    """Raise DocumentTooComplex, CorruptDocument or EncryptedDocument before extraction.

    `method` is the extraction method asked for: OCR of a PDF renders every page first.
    `data`: the file's bytes when the caller holds them already: the ZIP, PDF and HTML
    guards read them rather than the file (pdfinfo, when a PDF needs it, reads the file).
    """
    if fmt.ext in ZIP_EXTS:
        return Checked(container=_check_zip(path, limits, data))
    elif fmt.ext in IMAGE_EXTS:
        _check_image(path, limits)
    elif fmt.ext == "pdf":
        return _check_pdf(path, limits, ocr=method == "tesseract", data=data)
    elif fmt.ext in HTML_EXTS:
        _check_html(path, limits, data)
    return Checked()


def check_text_size(text: str, limits: Limits) -> None:
    """Raise DocumentTooComplex when the extracted text is above max_text_bytes (UTF-8)."""
    limit = limits.max_text_bytes
    if len(text) * 4 <= limit:  # no character takes more than 4 bytes in UTF-8
        return
    # In slices, so a huge text is not copied whole just to be measured.
    step = 1 << 20
    size = sum(len(text[i:i + step].encode("utf-8", "surrogatepass"))
               for i in range(0, len(text), step))
    if size > limit:
        raise DocumentTooComplex(f"the extracted text is {size} bytes; "
                                 f"the limit is {limit} (MAX_TEXT_BYTES)")


def _shown(name: str) -> str:
    return "".join(c if c.isprintable() else "_" for c in name)[:100]


# --- ZIP containers ------------------------------------------------------------------
def _check_zip(path: Path, limits: Limits, data: bytes | None) -> zipfile.ZipFile:
    """The container, opened over the file's bytes, once every check passed."""
    # Read once (bounded by MAX_CONTENT_LENGTH, as the PDF and HTML guards read theirs):
    # the record count and every entry's first bytes come out of memory, not from a seek
    # and a read per entry.
    if data is None:
        data = path.read_bytes()
    records = _central_records(data)
    if records > limits.max_zip_entries:
        # Refused before zipfile builds one object per entry (300,000 entries fit in 16 MB);
        # zipfile never finds more entries than there are records.
        raise DocumentTooComplex(f"the archive has {records} entries; the limit is "
                                 f"{limits.max_zip_entries} (MAX_ZIP_ENTRIES)")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))  # no file behind it: nothing to close
        infos = zf.infolist()
        _check_zip_sizes(infos, limits)
        for info in infos:
            if info.file_size and not info.is_dir():
                _check_xml_entry(zf, info, data)
        return zf
    except RuntimeError as exc:
        if "encrypted" not in str(exc):  # zipfile's way to say "password-protected"
            raise
        raise EncryptedDocument("the archive has password-protected entries") from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError,
            NotImplementedError, ValueError) as exc:
        raise CorruptDocument(f"the ZIP container cannot be read: "
                              f"{without_paths(str(exc), path)}") from exc


def _central_records(data: bytes) -> int:
    """Central-directory record signatures in the file: never fewer than zipfile parses.

    Counted in the raw bytes rather than read from the end record, which can lie and which
    says 0xFFFF for zip64 archives.
    """
    return data.count(b"PK\x01\x02")


def _check_zip_sizes(infos: list[zipfile.ZipInfo], limits: Limits) -> None:
    # Python's zipfile stops reading an entry at its declared size, so the declared sizes
    # are what the parsers behind textract can be made to inflate.
    total = sum(i.file_size for i in infos)
    if total > limits.max_unzipped_bytes:
        raise DocumentTooComplex(f"the archive declares {total} bytes uncompressed; the limit "
                                 f"is {limits.max_unzipped_bytes} (MAX_UNZIPPED_BYTES)")
    ratio_limit = limits.max_compression_ratio
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR and ratio > ratio_limit:
            raise DocumentTooComplex(
                f"entry {_shown(info.filename)!r} has a compression ratio of {ratio:.0f}:1; "
                f"the limit is {ratio_limit}:1 (MAX_COMPRESSION_RATIO)")
    ratio = total / max(sum(i.compress_size for i in infos), 1)
    if total > RATIO_FLOOR and ratio > ratio_limit:
        raise DocumentTooComplex(f"the archive has a compression ratio of {ratio:.0f}:1; "
                                 f"the limit is {ratio_limit}:1 (MAX_COMPRESSION_RATIO)")


# How far into an entry each look at its prolog reads. Most prologs are decided in their
# first 100 bytes; a DOCTYPE is always judged on XML_DOCTYPE_BYTES at least (entity
# declarations found that far in are refused); a prolog padded with comments or processing
# instructions is read on up to XML_SCAN_BYTES.
XML_FIRST_BYTES = 512
XML_DOCTYPE_BYTES = 8192


def _check_xml_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, data: bytes) -> None:
    # Every entry, not only *.xml: OOXML parts are found through relationships, whatever
    # their names. Reads are bounded: each read(n) inflates at most n bytes.
    f = _EntryStart(data, info) if _EntryStart.reads(info) else zf.open(info)
    with f:
        buf = b""
        for want in (XML_FIRST_BYTES, XML_DOCTYPE_BYTES, XML_SCAN_BYTES):
            buf += f.read(want - len(buf))
            verdict = _xml_verdict(buf, complete=len(buf) < want,
                                   judge_doctype=want >= XML_DOCTYPE_BYTES)
            if verdict != _MORE:
                break
        else:  # padding the prolog must not hide a DTD from us
            verdict = "XML prologs longer than 64 KB are refused"
    if verdict:
        raise DocumentTooComplex(f"{verdict} (entry {_shown(info.filename)!r})")


_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's structFileHeader
# Central-directory flags for which zipfile.open raises (encrypted, patched data, strong
# encryption): such entries go through zipfile itself, for its exact errors.
_FLAGS_FOR_ZIPFILE = 0x01 | 0x20 | 0x40
_UTF8_NAME = 0x800


class _EntryStart:
    """The first bytes of a stored or deflated entry, inflated out of the archive's bytes.

    What ZipExtFile.read(n) returns and raises, without its per-entry seek, header read and
    4 KB minimum inflation: the same local header checks (signature, name), output capped
    at the declared size, EOFError when the data is cut short, and the CRC compared once
    the entry has been read to its end.
    """

    _CHUNK = 1024  # compressed bytes fed at a time: a 512-byte start needs one or two

    @staticmethod
    def reads(info: zipfile.ZipInfo) -> bool:
        return (info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
                and not info.flag_bits & _FLAGS_FOR_ZIPFILE)

    def __init__(self, data: bytes, info: zipfile.ZipInfo) -> None:
        at = info.header_offset
        if at < 0 or at + _LOCAL_HEADER.size > len(data):
            raise zipfile.BadZipFile("Truncated file header")
        header = _LOCAL_HEADER.unpack_from(data, at)
        if header[0] != b"PK\x03\x04":
            raise zipfile.BadZipFile("Bad magic number for file header")
        flags, name_len, extra_len = header[3], header[10], header[11]
        at += _LOCAL_HEADER.size
        name = data[at:at + name_len].decode("utf-8" if flags & _UTF8_NAME else "cp437")
        if name != info.orig_filename:
            raise zipfile.BadZipFile(f"file name in directory {_shown(info.orig_filename)!r} "
                                     f"and header {_shown(name)!r} differ")
        start = at + name_len + extra_len
        self._raw = memoryview(data)[start:start + info.compress_size]
        self._short = len(self._raw) < info.compress_size  # the archive is cut inside it
        self._at = 0  # compressed bytes consumed
        self._left = info.file_size  # zipfile never returns more than the declared size
        self._crc, self._expected_crc = 0, info.CRC
        self._inflate = (zlib.decompressobj(-15)
                         if info.compress_type == zipfile.ZIP_DEFLATED else None)
        self._pending = b""  # inflated past what a read asked for
        self._ended = False  # the deflate stream (or its compressed data) has ended

    def __enter__(self) -> _EntryStart:
        return self

    def __exit__(self, *_: object) -> None:
        self._raw.release()

    def read(self, n: int) -> bytes:
        """Up to n more bytes of the entry (fewer only at its end)."""
        n = min(n, self._left)
        if self._inflate is None:
            out = bytes(self._raw[self._at:self._at + n])
            self._at += len(out)
            if len(out) < n and self._short:
                raise EOFError("the entry's data is cut short")
            end = self._at >= len(self._raw)
        else:
            out, end = self._inflated(n)
        self._left -= len(out)
        self._crc = zlib.crc32(out, self._crc)
        if (end or self._left <= 0) and self._crc != self._expected_crc:
            raise zipfile.BadZipFile("Bad CRC-32 for the entry")
        return out

    def _inflated(self, n: int) -> tuple[bytes, bool]:
        inflate, out = self._inflate, self._pending
        assert inflate is not None
        while len(out) < n and not self._ended:
            chunk = inflate.unconsumed_tail or self._raw[self._at:self._at + self._CHUNK]
            if not inflate.unconsumed_tail:
                self._at += len(chunk)
            if not chunk:
                if self._short:
                    raise EOFError("the entry's compressed data is cut short")
                out += inflate.flush()  # as zipfile does when the data ends first
                self._ended = True
                break
            # max_length: never more than asked for, whatever the compressed bytes hold.
            out += inflate.decompress(chunk, n - len(out))
            self._ended = inflate.eof
        self._pending = out[n:]
        return out[:n], self._ended and not self._pending


_PROLOG = re.compile(rb"(?:\s|<\?.*?\?>|<!--.*?-->)*", re.S)
_SUBSET_END = re.compile(rb"\]\s*>")


def _xml_verdict(buf: bytes, complete: bool, judge_doctype: bool = True) -> str | None:
    """A reason to refuse this start of an XML document, None, or _MORE to read further.

    `complete`: `buf` is the whole document. `judge_doctype=False`: a DOCTYPE in a start
    that is not the whole document asks for more (only its absence is decided).
    """
    encoding = _xml_encoding(buf)
    if encoding != "utf-8":
        buf = _decoded(buf, encoding, final=complete).encode("utf-8", "replace")
    text = buf.removeprefix(b"\xef\xbb\xbf")
    prolog = _PROLOG.match(text)
    assert prolog is not None  # every part of _PROLOG is optional: it matches at 0 at least
    rest = text[prolog.end():]
    if not rest.startswith(b"<!DOCTYPE"):
        unfinished = rest.startswith((b"<!--", b"<?")) or b"<!DOCTYPE".startswith(rest)
        return _MORE if unfinished and not complete else None
    if b"<!ENTITY" in rest:
        return "XML entity declarations are refused"
    if not judge_doctype and not complete:
        return _MORE
    subset, close = rest.find(b"["), rest.find(b">")
    if subset != -1 and (close == -1 or subset < close) and not _SUBSET_END.search(rest):
        return None if complete else _MORE  # an internal DTD subset still open
    return None


# The start of an XML document by the byte patterns of XML 1.0 appendix F: a BOM, or the
# first character '<' in each code unit width and byte order. UTF-32 comes before UTF-16,
# whose little-endian BOM begins UTF-32's. EBCDIC code pages differ on '!' and '[', so
# an EBCDIC document is read in the code page its declaration names (cp037 without one).
_XML_STARTS = (
    (b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xff\xfe", "ucs-4-2143"), (b"\xfe\xff\x00\x00", "ucs-4-3412"),
    (b"\x00\x00\x00<", "utf-32-be"), (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00\x00<\x00", "ucs-4-2143"), (b"\x00<\x00\x00", "ucs-4-3412"),
    (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le"),
    (b"\x00<", "utf-16-be"), (b"<\x00", "utf-16-le"),
    (b"\x4c\x6f\xa7\x94", "cp037"),
)
# Every start above begins with one of these byte pairs: any other start skips the list
# (most entries: "<?xml" in ASCII, or an image).
_XML_START_PAIRS = frozenset(start[:2] for start, _ in _XML_STARTS)
_DECLARED = re.compile(rb"^<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]{1,40})[\"']")
# Encodings Python knows in which '<!DOCTYPE' is not written in ASCII bytes.
_MARKUP_NOT_ASCII = frozenset({"utf-7", "cp037", "cp273", "cp424", "cp500", "cp875",
                               "cp1026", "cp1140"})


def _xml_encoding(buf: bytes) -> str:
    """How to read this start of an XML document: a codec name, or a UCS-4 order."""
    for start, encoding in _XML_STARTS if buf[:2] in _XML_START_PAIRS else ():
        if buf.startswith(start):
            if encoding == "cp037":  # its declaration is legible in any EBCDIC page
                return _declared(buf[:200].decode("cp037").encode("ascii", "replace"),
                                 "cp037")
            return encoding
    # ASCII-compatible bytes: the declaration may still name an encoding in which markup
    # is not ASCII (UTF-7 writes '<' as '+ADw-'), and libxml2 follows it.
    return _declared(buf.removeprefix(b"\xef\xbb\xbf"), "utf-8")


def _declared(start: bytes, default: str) -> str:
    """The encoding the XML declaration at `start` names, if it writes markup other than
    in ASCII; else `default`."""
    declared = _DECLARED.match(start)
    if declared:
        name = _codec_name(declared.group(1))
        if name in _MARKUP_NOT_ASCII:
            return name
    return default  # a name Python does not know: read the bytes as they are


@functools.lru_cache(maxsize=64)  # every OOXML part says "UTF-8": looked up once
def _codec_name(declared: bytes) -> str | None:
    try:
        return codecs.lookup(declared.decode("ascii")).name
    except LookupError:
        return None


def _decoded(buf: bytes, encoding: str, final: bool = True) -> str:
    """`buf` as text, whole code units only (a cut mid-unit must not shift what follows);
    a BOM stays as U+FEFF, which the UTF-8 BOM strip in _xml_verdict removes.

    `final=False`: `buf` is cut from a longer document, and a character cut in two at its
    end is left out rather than replaced (a UTF-7 '<' cut mid-sequence must not become a
    U+FFFD that ends the prolog before a DOCTYPE)."""
    width = 4 if encoding.startswith(("utf-32", "ucs-4")) else (
        2 if encoding.startswith("utf-16") else 1)
    units = bytearray(buf[:len(buf) - len(buf) % width])
    if encoding == "ucs-4-2143":  # bytes 2 1 4 3 of each big-endian unit: swap pairs
        units[0::2], units[1::2] = units[1::2], units[0::2]
        encoding = "utf-32-be"
    elif encoding == "ucs-4-3412":  # bytes 3 4 1 2: swap the halves
        units[0::4], units[1::4], units[2::4], units[3::4] = (
            units[2::4], units[3::4], units[0::4], units[1::4])
        encoding = "utf-32-be"
    return codecs.getincrementaldecoder(encoding)("replace").decode(bytes(units), final)


# --- HTML ------------------------------------------------------------------------------
def _check_html(path: Path, limits: Limits, data: bytes | None = None) -> None:
    if data is None:
        data = path.read_bytes()  # bounded by MAX_CONTENT_LENGTH
    encoding = _xml_encoding(data)  # a BOM or NULs: UTF-16/32, which textract detects too
    # Any other encoding writes tags in ASCII bytes: latin-1 maps each byte to one char.
    text = _decoded(data, encoding) if encoding != "utf-8" else data.decode("latin-1")
    found = markup.measure(text, limits.max_nesting_depth, limits.max_nesting_work)
    if found.deepest > limits.max_nesting_depth:
        raise DocumentTooComplex(
            f"the HTML nests more than {limits.max_nesting_depth} elements deep; the limit "
            f"is {limits.max_nesting_depth} (MAX_NESTING_DEPTH)")
    if found.work > limits.max_nesting_work:
        raise DocumentTooComplex(
            f"the HTML's elements, each counted once per element around it, come to more "
            f"than {limits.max_nesting_work}; the limit is {limits.max_nesting_work} "
            f"(MAX_NESTING_WORK)")


# --- images ----------------------------------------------------------------------------
def _check_image(path: Path, limits: Limits) -> None:
    # tesseract decodes the whole image: its size must be known before it gets the file.
    together = 0  # pixels decoded at once: a GIF's frames are all decoded first
    with open(path, "rb") as f:
        try:
            if f.read(6) in (b"GIF87a", b"GIF89a"):
                frames = _gif_frames(f, limits.max_pdf_pages)
                pages = [canvas for canvas, _ in frames] if frames else None
                together = sum(raster for _, raster in frames or ())
            else:
                f.seek(0)
                pages = _image_pages(f, limits.max_pdf_pages)
        except struct.error:
            pages = None
    if not pages:
        raise CorruptDocument("the image header cannot be read (truncated or not an image)")
    if len(pages) > limits.max_pdf_pages:
        raise DocumentTooComplex(f"the image has more than {limits.max_pdf_pages} pages; "
                                 f"the limit is {limits.max_pdf_pages} (MAX_PDF_PAGES)")
    width, height = max(pages, key=lambda wh: wh[0] * wh[1])
    if width * height > limits.max_image_pixels:
        raise DocumentTooComplex(
            f"the image is {width}x{height} = {width * height} pixels; the limit is "
            f"{limits.max_image_pixels} (MAX_IMAGE_PIXELS)")
    if together > limits.max_image_pixels:
        # giflib's DGifSlurp, under leptonica's reader, holds every frame in memory.
        raise DocumentTooComplex(
            f"the image's {len(pages)} frames are {together} pixels together; the limit is "
            f"{limits.max_image_pixels} (MAX_IMAGE_PIXELS)")


def _image_pages(f: BinaryIO, max_pages: int) -> list[tuple[int, int]] | None:
    """(width, height) of each page, read from the headers only; None if unreadable."""
    head = f.read(32)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return [struct.unpack_from(">II", head, 16)]
    if head.startswith(b"\xff\xd8"):
        size = _jpeg_size(f)
        return [size] if size else None
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff_pages(f, head, max_pages)
    return None


def _gif_frames(f: BinaryIO, max_frames: int) -> list[tuple[tuple[int, int], int]] | None:
    """Each GIF frame's canvas and own pixels, walked through the blocks without decoding.

    `f` is just past the signature. The logical screen is only a claim: decoders allocate
    each frame by its own image descriptor, which may be far larger (a 1x1 screen with a
    7500x7500 frame). A canvas reaches the frame's far corner (offset + size) and is never
    smaller than the screen. None when the header is cut short.
    """
    head = f.read(7)
    if len(head) < 7:
        return None
    screen_w, screen_h, packed = struct.unpack_from("<HHB", head)
    if packed & 0x80:  # a global colour table
        f.seek(3 << ((packed & 7) + 1), os.SEEK_CUR)
    data = f.read()  # bounded by MAX_CONTENT_LENGTH; sub-blocks are walked by index
    frames: list[tuple[tuple[int, int], int]] = []
    at = 0
    while at < len(data) and len(frames) <= max_frames:
        kind = data[at]
        if kind == 0x21:  # extension: label, then sub-blocks
            at = _skip_sub_blocks(data, at + 2)
        elif kind == 0x2C:  # image descriptor: left, top, width, height, packed
            if at + 10 > len(data):
                break
            left, top, width, height, packed = struct.unpack_from("<HHHHB", data, at + 1)
            canvas = (max(screen_w, left + width), max(screen_h, top + height))
            frames.append((canvas, width * height))
            at += 10
            if packed & 0x80:  # a local colour table
                at += 3 << ((packed & 7) + 1)
            at = _skip_sub_blocks(data, at + 1)  # after the LZW minimum code size
        else:  # the trailer, or a byte no decoder goes past
            break
    return frames or [((screen_w, screen_h), 0)]


def _skip_sub_blocks(data: bytes, at: int) -> int:
    """The index after a chain of GIF data sub-blocks (a length byte, then that many)."""
    while at < len(data):
        size = data[at]
        at += 1 + size
        if size == 0:
            break
    return at


_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    f.seek(2)
    for _ in range(_MAX_JPEG_SEGMENTS):
        if f.read(1) != b"\xff":
            return None
        marker = f.read(1)
        for _fill in range(64):  # 0xFF fill bytes may pad a marker
            if marker != b"\xff":
                break
            marker = f.read(1)
        if not marker or marker == b"\xff":
            return None
        code = marker[0]
        if code == 0x01 or 0xD0 <= code <= 0xD7:  # markers without a length
            continue
        if code in (0xD9, 0xDA):  # end of image or scan data before any frame header
            return None
        length = struct.unpack(">H", f.read(2))[0]
        if code in _SOF:
            height, width = struct.unpack(">xHH", f.read(5))
            return width, height
        if length < 2:
            return None
        f.seek(length - 2, os.SEEK_CUR)
    return None


def _tiff_pages(f: BinaryIO, head: bytes, max_pages: int) -> list[tuple[int, int]] | None:
    order = "<" if head[:2] == b"II" else ">"
    big = struct.unpack_from(order + "H", head, 2)[0] == 43  # BigTIFF: 64-bit offsets
    count_fmt, entry_size, off_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
    offset = struct.unpack_from(order + off_fmt, head, 8 if big else 4)[0]
    pages: list[tuple[int, int]] = []
    seen: set[int] = set()
    while offset and offset not in seen and len(pages) <= max_pages:
        seen.add(offset)
        f.seek(offset)
        count = struct.unpack(order + count_fmt, f.read(struct.calcsize(count_fmt)))[0]
        if count > 4096:  # real IFDs hold a few dozen tags
            return None
        raw = f.read(count * entry_size)
        if len(raw) < count * entry_size:
            return None
        tags = {}
        for k in range(count):
            tag, kind = struct.unpack_from(order + "HH", raw, k * entry_size)
            value_at = k * entry_size + (12 if big else 8)
            fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if tag in (256, 257) and fmt:
                tags[tag] = struct.unpack_from(order + fmt, raw, value_at)[0]
        if 256 not in tags or 257 not in tags:
            return None
        pages.append((tags[256], tags[257]))
        offset = struct.unpack(order + off_fmt, f.read(struct.calcsize(off_fmt)))[0]
    return pages


# --- PDF -------------------------------------------------------------------------------
_PAGES_LINE = re.compile(r"^Pages:\s+(\d+)\s*$", re.M)
_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_MEDIA_BOX_LINE = re.compile(
    r"^Page\s+(\d+)\s+MediaBox:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$", re.M)
# textract's OCR of a PDF runs `pdftoppm <pdf> <prefix>` with no -r: poppler's default
# resolution, and its default box (the MediaBox; -cropbox is not passed). Poppler 22
# ignores /UserUnit, so the MediaBox in points is the whole story.
OCR_RENDER_DPI = 150


def _check_pdf(path: Path, limits: Limits, ocr: bool = False,
               data: bytes | None = None) -> Checked:
    catalog: Catalog | CatalogUnreadable | None = None
    size = path.stat().st_size if data is None else len(data)
    if not ocr and size <= CATALOG_READ_BYTES:
        try:
            catalog = read_catalog(path, data)
        except CatalogUnreadable as exc:
            catalog = CatalogUnreadable(str(exc))  # the verdict, not the parser's frames
        else:
            if catalog.pages is not None:
                # Poppler's page count is this same /Count (Catalog::getNumPages), so the
                # bound is as strong as pdfinfo's, without a process that took 4 ms, two
                # thirds of pdftotext's own time. A /Count poppler would not take has no
                # pages here (read_catalog), and pdfinfo reports it as it always did.
                _refuse_pages(catalog.pages, limits)
                _check_drawing(path, limits, data)
                return Checked(catalog.pages, catalog)
    pages, output = _pdfinfo_pages(path, limits, ocr, data)
    return Checked(pages, catalog, None if ocr else output)


def _pdfinfo_pages(path: Path, limits: Limits, ocr: bool,
                   data: bytes | None = None) -> tuple[int, bytes | None]:
    """The page count as pdfinfo prints it, and all it printed (None without pdfinfo): it
    says which PDFs need a password and which are corrupt, and reads broken xrefs, where
    pdfminer (without its slow fallback) stops.
    """
    # For OCR, the same pdfinfo run also prints every page's boxes (-box with a page
    # range): poppler resolves inherited boxes, object streams and broken xrefs for us, in
    # 40 ms for 2,000 pages, where parsing the page tree here would redo that in Python.
    # Otherwise it prints the Info dictionary as the metadata reader parses it.
    args = (["pdfinfo", "-f", "1", "-l", str(limits.max_pdf_pages), "-box"] if ocr
            else list(PDFINFO_METADATA_ARGS))
    try:
        proc = subprocess.Popen([*args, os.path.abspath(path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        # Without poppler there is no pdftoppm either: OCR of a PDF cannot start.
        _check_drawing(path, limits, data)
        pages, info, stdout = _count_pages_roughly(path), "", None
    else:
        with proc:
            try:
                # pdfinfo reads the PDF while this process reads its drawing instructions.
                _check_drawing(path, limits, data)
                stdout, stderr = proc.communicate(timeout=PDFINFO_TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                raise DocumentTooComplex(f"counting the PDF's pages took more than "
                                         f"{PDFINFO_TIMEOUT:g} s") from exc
            except BaseException:
                proc.kill()
                raise
        err = stderr.decode("utf-8", "replace")
        if proc.returncode != 0:
            if "Incorrect password" in err:
                raise EncryptedDocument("the PDF needs a password; send it decrypted")
            reason = (err.strip().splitlines() or ["unknown error"])[-1][:200]
            raise CorruptDocument(f"the PDF cannot be read: {without_paths(reason, path)}")
        info = stdout.decode("utf-8", "replace")
        # The last match: a Title printed earlier could carry a forged "Pages:" line.
        found = _PAGES_LINE.findall(info)
        if not found:
            raise CorruptDocument("the PDF has no readable page count")
        pages = int(found[-1])
    _refuse_pages(pages, limits)
    if ocr and info:
        _check_rendered_pages(info, limits)
    return pages, stdout


def _refuse_pages(pages: int, limits: Limits) -> None:
    if pages > limits.max_pdf_pages:
        raise DocumentTooComplex(f"the PDF has {pages} pages; the limit is "
                                 f"{limits.max_pdf_pages} (MAX_PDF_PAGES)")


def _check_drawing(path: Path, limits: Limits, data: bytes | None = None) -> None:
    """Refuse a PDF whose drawing instructions would make its reader hold too much."""
    if data is None:
        data = path.read_bytes()
    try:
        most = pdf_content.bounds(data, limits.max_pdf_content_bytes,
                                  limits.max_compression_ratio)
        if (most.most_states <= limits.max_pdf_state_depth
                and most.most_path_segments <= limits.max_pdf_path_segments):
            return  # nothing to count one by one: every real document ends here
        content = pdf_content.measure(
            data, limits.max_pdf_content_bytes, limits.max_compression_ratio,
            paths=most.most_path_segments > limits.max_pdf_path_segments)
    except pdf_content.ContentTooLarge as exc:
        raise DocumentTooComplex(f"{exc} ({exc.setting})") from exc
    if content.deepest_state > limits.max_pdf_state_depth:
        raise DocumentTooComplex(
            f"the PDF saves its graphics state {content.deepest_state} times without "
            f"restoring it; the limit is {limits.max_pdf_state_depth} (MAX_PDF_STATE_DEPTH)")
    if content.longest_path > limits.max_pdf_path_segments:
        raise DocumentTooComplex(
            f"the PDF draws a path of {content.longest_path} segments; the limit is "
            f"{limits.max_pdf_path_segments} (MAX_PDF_PATH_SEGMENTS)")


def _check_rendered_pages(info: str, limits: Limits) -> None:
    """Refuse a PDF whose pages, rendered for OCR, make images past the pixel limits."""
    # A forged box line in the Title can only add a page to the sums, never hide one.
    total = 0
    for page, *box in _MEDIA_BOX_LINE.findall(info):
        try:
            x1, y1, x2, y2 = (float(v) for v in box)
        except ValueError:
            continue
        width = math.ceil(abs(x2 - x1) / 72 * OCR_RENDER_DPI)
        height = math.ceil(abs(y2 - y1) / 72 * OCR_RENDER_DPI)
        if width * height > limits.max_image_pixels:
            raise DocumentTooComplex(
                f"page {page} renders for OCR at {OCR_RENDER_DPI} dpi as {width}x{height} = "
                f"{width * height} pixels; the limit is {limits.max_image_pixels} "
                f"(MAX_IMAGE_PIXELS)")
        total += width * height
        if total > limits.max_ocr_pixels:
            raise DocumentTooComplex(
                f"the pages render for OCR at {OCR_RENDER_DPI} dpi as more than {total} "
                f"pixels in all; the limit is {limits.max_ocr_pixels} (MAX_OCR_PIXELS)")


def _count_pages_roughly(path: Path) -> int:
    """Page objects counted in the raw bytes when pdfinfo is missing (misses those hidden
    in compressed object streams: a best effort, the job deadline backs it up)."""
    with open(path, "rb") as f:
        data = f.read(64 * 1024 * 1024)
    if b"%PDF-" not in data[:1024]:
        raise CorruptDocument("the PDF has no %PDF- header")
    return sum(1 for _ in _PAGE_OBJECT.finditer(data))
