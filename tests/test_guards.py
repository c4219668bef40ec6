"""Bomb guards on the real corpus and on hostile documents built here."""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import random
import re
import shlex
import shutil
import struct
import subprocess
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.config import Settings
from daemon.documents import guards, pdf_content
from daemon.documents.extract import extract_text
from daemon.documents.formats import FORMATS, detect_bytes
from daemon.documents.guards import Limits, check_document, check_text_size
from daemon.documents.metadata import read_metadata
from daemon.documents.pdf_catalog import Catalog, CatalogUnreadable
from daemon.documents.redact import without_paths
from daemon.errors import (
    CorruptDocument,
    DocumentTooComplex,
    EncryptedDocument,
    ExtractorUnavailable,
)
from tests.bombs import (
    LAUGHS,
    drawing_pdf,
    gif_frames,
    info_loop_pdf,
    minimal_pdf,
    png,
    with_broken_xref,
)
from tests.conftest import CORPUS, corpus_documents, manifest_params

LIMITS = Limits.from_settings(Settings())
FOUR_PAGES = CORPUS / "py-pdf-sample-files" / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
DOCX = CORPUS / "textract-tests" / "docx" / "raw_text.docx"
PDFINFO = shutil.which("pdfinfo") or "pdfinfo"  # the real one, whatever a test puts first


def limits(**changes: int) -> Limits:
    return dataclasses.replace(LIMITS, **changes)


DOCS = manifest_params()


def write_zip(path: Path, entries: dict[str, bytes],
              compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def docx_with(path: Path, document: bytes, part: str = "word/document.xml") -> Path:
    return write_zip(path, {"[Content_Types].xml": b'<?xml version="1.0"?><Types/>',
                            part: document})


def jpeg(width: int, height: int, sof: int = 0xC0) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    frame = (b"\xff\xff" + bytes([sof]) + struct.pack(">HBHHB", 17, 8, height, width, 3)
             + b"\x01\x11\x00\x02\x11\x01\x03\x11\x01")  # one 0xFF fill byte first
    return b"\xff\xd8" + app0 + frame + b"\xff\xda\x00\x08" + bytes(6) + b"\xff\xd9"


def gif(width: int, height: int, frames: list[tuple[int, int, int, int]] = ()) -> bytes:
    """A GIF whose screen is width x height, with frames (left, top, width, height)."""
    return gif_frames(width, height, frames)


def tiff(pages: list[tuple[int, int]], order: str = "<", kind: int = 4) -> bytes:
    """A TIFF whose IFDs hold only ImageWidth/ImageLength (no pixel data needed)."""
    out = bytearray((b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8))
    value = {3: "H2x", 4: "I"}[kind]
    for i, (width, height) in enumerate(pages):
        out += struct.pack(order + "H", 2)
        out += struct.pack(order + "HHI" + value, 256, kind, 1, width)
        out += struct.pack(order + "HHI" + value, 257, kind, 1, height)
        last = i == len(pages) - 1
        out += struct.pack(order + "I", 0 if last else len(out) + 4)
    return bytes(out)


def bigtiff(width: int, height: int) -> bytes:
    ifd = struct.pack("<Q", 2) + struct.pack("<HHQQ", 256, 16, 1, width)
    ifd += struct.pack("<HHQQ", 257, 16, 1, height) + struct.pack("<Q", 0)
    return b"II" + struct.pack("<HHHQ", 43, 8, 0, 16) + ifd


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- limits ------------------------------------------------------------------------------
def test_limits_are_taken_from_the_settings() -> None:
    settings = Settings(max_pdf_pages=7, max_zip_entries=11)
    built = Limits.from_settings(settings)
    assert (built.max_pdf_pages, built.max_zip_entries) == (7, 11)
    assert built.max_image_pixels == Settings().max_image_pixels
    assert built.max_text_bytes == Settings().max_text_bytes


# --- the corpus ------------------------------------------------------------------------
def test_the_corpus_is_present() -> None:
    assert len(DOCS) >= 60, f"no corpus at {CORPUS}: set TEXTRACTD_CORPUS"


@pytest.mark.parametrize(("doc", "fmt", "ext"), DOCS)
def test_every_corpus_document_passes_the_guards_quickly(doc, fmt, ext) -> None:
    path = CORPUS / doc
    fmt_found = detect_bytes(path.name, path.read_bytes(), ext)
    started = time.perf_counter()
    check_document(path, fmt_found, LIMITS)
    assert time.perf_counter() - started < 1.0


def test_a_pdf_with_only_an_owner_password_passes() -> None:
    path = CORPUS / "textract-tests" / "pdf" / "ocr_text.pdf"  # pdfinfo: "Encrypted: yes"
    check_document(path, FORMATS["pdf"], limits(max_pdf_pages=3))
    with pytest.raises(DocumentTooComplex, match="3 pages"):
        check_document(path, FORMATS["pdf"], limits(max_pdf_pages=2))


# --- ZIP containers ------------------------------------------------------------------------
def test_a_single_highly_compressed_entry_is_refused_by_its_ratio(tmp_path) -> None:
    path = write_zip(tmp_path / "bomb.docx", {"word/document.xml": bytes(4 * 1024 * 1024)})
    with pytest.raises(DocumentTooComplex, match=r"word/document.xml.*ratio of \d+:1"):
        check_document(path, FORMATS["docx"], LIMITS)


def test_many_compressible_entries_are_refused_by_the_overall_ratio(tmp_path) -> None:
    entries = {f"xl/media/zeros{i}.bin": bytes(256 * 1024) for i in range(64)}
    path = write_zip(tmp_path / "bomb.xlsx", entries)
    with pytest.raises(DocumentTooComplex, match=r"the archive has a compression ratio"):
        check_document(path, FORMATS["xlsx"], LIMITS)


def test_a_small_compressible_entry_is_not_mistaken_for_a_bomb(tmp_path) -> None:
    path = write_zip(tmp_path / "small.docx", {"word/styles.xml": b"<a/>" * 200_000})
    check_document(path, FORMATS["docx"], LIMITS)  # 800 KB: below the ratio floor


@pytest.fixture(scope="module")
def many_entries(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("zip") / "many.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(20_000):
            zf.writestr(f"word/e{i}", b"")
    return path


def test_a_docx_with_20000_entries_is_refused_by_its_entry_count(many_entries) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(DocumentTooComplex, match=r"20000 entries; the limit is 10000"):
            check_document(many_entries, FORMATS["docx"], LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024  # zipfile's 20,000 ZipInfo objects alone take ~11 MB


def test_entries_are_counted_across_read_chunk_boundaries(tmp_path) -> None:
    path = write(tmp_path / "split.docx", bytes((1 << 20) - 2) + b"PK\x01\x02" * 3)
    with pytest.raises(DocumentTooComplex, match="3 entries"):
        check_document(path, FORMATS["docx"], limits(max_zip_entries=2))


def test_an_end_record_lying_about_the_entry_count_does_not_help(many_entries,
                                                                 tmp_path) -> None:
    data = bytearray(many_entries.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)  # "1 entry" on this disk and in total
    path = write(tmp_path / "liar.docx", bytes(data))
    with pytest.raises(DocumentTooComplex, match="20000 entries"):
        check_document(path, FORMATS["docx"], LIMITS)


def test_declared_sizes_are_checked_without_inflating_anything(tmp_path) -> None:
    data = bytearray(write_zip(tmp_path / "a.docx", {"word/document.xml": b"<w/>"})
                     .read_bytes())
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 4_000_000_000)  # claims 4 GB uncompressed
    path = write(tmp_path / "claims.docx", bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(DocumentTooComplex, match="declares 4000000000 bytes"):
            check_document(path, FORMATS["docx"], LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024


def test_the_unzipped_size_limit_is_the_configured_figure() -> None:
    with pytest.raises(DocumentTooComplex, match=r"the limit is 1000 \(MAX_UNZIPPED_BYTES\)"):
        check_document(DOCX, FORMATS["docx"], limits(max_unzipped_bytes=1000))


def test_billion_laughs_in_a_docx_shaped_zip_is_refused(tmp_path) -> None:
    path = docx_with(tmp_path / "laughs.docx", LAUGHS)
    with pytest.raises(DocumentTooComplex,
                       match=r"XML entity declarations are refused.*word/document.xml"):
        check_document(path, FORMATS["docx"], LIMITS)


def test_entity_declarations_in_a_part_not_named_xml_are_refused(tmp_path) -> None:
    path = docx_with(tmp_path / "laughs.docx", LAUGHS, part="word/document.bin")
    with pytest.raises(DocumentTooComplex, match="XML entity declarations"):
        check_document(path, FORMATS["docx"], LIMITS)


def test_entity_declarations_in_utf16_xml_are_refused(tmp_path) -> None:
    path = docx_with(tmp_path / "laughs.docx", LAUGHS.decode().encode("utf-16"))
    with pytest.raises(DocumentTooComplex, match="XML entity declarations"):
        check_document(path, FORMATS["docx"], LIMITS)


def _ucs4(text: str, order: tuple[int, int, int, int]) -> bytes:
    """`text` in UCS-4 with its bytes in `order` (1-based positions of a big-endian unit)."""
    big = text.encode("utf-32-be")
    return bytes(big[i + k - 1] for i in range(0, len(big), 4) for k in order)


def _utf7_markup(text: str) -> bytes:
    """UTF-7 where every '<' and '!' after the declaration is written base64-encoded, as
    the RFC allows."""
    declaration, _, rest = text.partition("\n")
    return (declaration.encode() + b"\n"
            + rest.encode("utf-7").replace(b"<", b"+ADw-").replace(b"!", b"+ACE-"))


LAUGHS_TEXT = LAUGHS.decode()
DECLARED = LAUGHS_TEXT.replace('version="1.0"', 'version="1.0" encoding="{}"')
LAUGHS_ENCODED = {
    "utf-32 with its BOM": LAUGHS_TEXT.encode("utf-32"),
    "utf-32-le without a BOM": LAUGHS_TEXT.encode("utf-32-le"),
    "utf-32-be without a BOM": LAUGHS_TEXT.encode("utf-32-be"),
    "utf-32-be with its BOM": "\ufeff".encode("utf-32-be") + LAUGHS_TEXT.encode("utf-32-be"),
    "ucs-4 order 2143": _ucs4(LAUGHS_TEXT, (2, 1, 4, 3)),
    "ucs-4 order 3412": _ucs4(LAUGHS_TEXT, (3, 4, 1, 2)),
    "utf-16-be without a declaration": LAUGHS_TEXT[22:].encode("utf-16-be"),
    "utf-7": _utf7_markup(DECLARED.format("UTF-7")),
    "ebcdic cp037": DECLARED.format("IBM037").encode("cp037"),
    "ebcdic cp500": DECLARED.format("IBM500").encode("cp500"),
}


@pytest.mark.parametrize("name", sorted(LAUGHS_ENCODED))
def test_entity_declarations_in_any_encoding_a_parser_detects_are_refused(name,
                                                                          tmp_path) -> None:
    data = LAUGHS_ENCODED[name]
    assert b"<!ENTITY" not in data  # the guard must read the encoding to see the DTD
    path = docx_with(tmp_path / "laughs.docx", data)
    with pytest.raises(DocumentTooComplex, match="XML entity declarations"):
        check_document(path, FORMATS["docx"], LIMITS)


@pytest.mark.parametrize("encoding", ["utf-32", "utf-32-le", "utf-16-be", "cp037"])
def test_xml_without_a_dtd_in_those_encodings_is_accepted(encoding, tmp_path) -> None:
    text = (f'<?xml version="1.0" encoding="{encoding}"?>\n'
            f'<w:document>{"text " * 5000}</w:document>')
    path = docx_with(tmp_path / "plain.docx", text.encode(encoding))
    check_document(path, FORMATS["docx"], LIMITS)


def test_a_dtd_pushed_past_64_kb_by_a_long_comment_is_refused(tmp_path) -> None:
    padded = b'<?xml version="1.0"?>\n<!--' + b"x" * 70_000 + b"-->\n" + LAUGHS[22:]
    path = docx_with(tmp_path / "padded.docx", padded)
    with pytest.raises(DocumentTooComplex, match="longer than 64 KB"):
        check_document(path, FORMATS["docx"], LIMITS)


def test_a_dtd_after_a_prolog_longer_than_the_first_look_is_refused(tmp_path) -> None:
    padded = (b'<?xml version="1.0"?>\n<!--' + b"x" * (2 * guards.XML_FIRST_BYTES)
              + b"-->\n" + LAUGHS[22:])
    path = docx_with(tmp_path / "padded.docx", padded)
    with pytest.raises(DocumentTooComplex, match="XML entity declarations"):
        check_document(path, FORMATS["docx"], LIMITS)


def test_entities_behind_a_long_doctype_literal_are_refused(tmp_path) -> None:
    # No '>' and no '[' in the first look: the DOCTYPE is judged on the longer window.
    literal = b"x" * (2 * guards.XML_FIRST_BYTES)
    document = (b'<?xml version="1.0"?>\n<!DOCTYPE lolz SYSTEM "' + literal + b'" [\n'
                + LAUGHS[LAUGHS.index(b"<!ENTITY"):])
    path = docx_with(tmp_path / "literal.docx", document)
    with pytest.raises(DocumentTooComplex, match="XML entity declarations"):
        check_document(path, FORMATS["docx"], LIMITS)


@pytest.mark.parametrize("window", ["XML_FIRST_BYTES", "XML_DOCTYPE_BYTES"])
def test_a_utf7_doctype_cut_by_the_end_of_a_look_is_still_seen(window, tmp_path) -> None:
    # '<' written '+ADw-' straddles the end of the bytes read: the cut sequence must ask
    # for more, not decode to U+FFFD and end the prolog there.
    declaration = b'<?xml version="1.0" encoding="UTF-7"?>'
    markup = _utf7_markup("\n" + LAUGHS_TEXT[22:]).lstrip(b"\n")
    assert markup.startswith(b"+ADw-")
    padding = getattr(guards, window) - len(declaration) - 2
    path = docx_with(tmp_path / "cut.docx", declaration + b" " * padding + markup)
    with pytest.raises(DocumentTooComplex, match="XML entity declarations"):
        check_document(path, FORMATS["docx"], LIMITS)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_BZIP2,
                                         zipfile.ZIP_LZMA])
def test_entity_declarations_are_refused_whatever_the_compression(compression,
                                                                  tmp_path) -> None:
    path = write_zip(tmp_path / "laughs.docx", {"word/document.xml": LAUGHS}, compression)
    with pytest.raises(DocumentTooComplex, match="XML entity declarations"):
        check_document(path, FORMATS["docx"], LIMITS)


def test_an_entry_whose_data_fails_its_crc_is_corrupt(tmp_path) -> None:
    data = bytearray(docx_with(tmp_path / "a.docx", b"<w:document/>" * 10,
                               part="word/document.xml").read_bytes())
    at = data.rfind(b"PK\x01\x02")  # the last entry's central record: CRC at +16
    struct.pack_into("<I", data, at + 16, struct.unpack_from("<I", data, at + 16)[0] ^ 1)
    path = write(tmp_path / "crc.docx", bytes(data))
    with pytest.raises(CorruptDocument, match="CRC"):
        check_document(path, FORMATS["docx"], LIMITS)


def test_a_local_header_naming_another_entry_is_corrupt(tmp_path) -> None:
    data = bytearray(docx_with(tmp_path / "a.docx", b"<w/>").read_bytes())
    at = data.rfind(b"PK\x03\x04")
    data[at + 30] ^= 0x20  # "word/..." -> "Word/..." in the local header only
    path = write(tmp_path / "renamed.docx", bytes(data))
    with pytest.raises(CorruptDocument, match="differ"):
        check_document(path, FORMATS["docx"], LIMITS)


def test_an_xhtml_doctype_without_entities_is_accepted(tmp_path) -> None:
    xhtml = (b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html PUBLIC '
             b'"-//W3C//DTD XHTML 1.1//EN" "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">\n'
             b"<html><body><p>" + b"text " * 20_000 + b"</p></body></html>")
    path = write_zip(tmp_path / "book.epub", {"mimetype": b"application/epub+zip",
                                              "OEBPS/ch1.xhtml": xhtml})
    check_document(path, FORMATS["epub"], LIMITS)


def test_a_truncated_docx_is_corrupt(tmp_path) -> None:
    path = write(tmp_path / "cut.docx", DOCX.read_bytes()[:5000])
    with pytest.raises(CorruptDocument, match="ZIP container cannot be read"):
        check_document(path, FORMATS["docx"], LIMITS)


def test_garbage_named_docx_is_corrupt(tmp_path) -> None:
    path = write(tmp_path / "garbage.docx", b"PK\x03\x04" + os.urandom(2000))
    with pytest.raises(CorruptDocument):
        check_document(path, FORMATS["docx"], LIMITS)


def test_a_zip_entry_flagged_as_encrypted_is_reported_as_encrypted(tmp_path) -> None:
    data = bytearray(docx_with(tmp_path / "a.docx", b"<w/>").read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at != -1:
            data[at + flags_at] |= 0x01
            at = data.find(signature, at + 1)
    path = write(tmp_path / "locked.docx", bytes(data))
    with pytest.raises(EncryptedDocument, match="password"):
        check_document(path, FORMATS["docx"], LIMITS)


# --- images --------------------------------------------------------------------------------
HUGE_IMAGES = {
    "png": png(100_000, 100_000),
    "jpg": jpeg(65_000, 65_000),
    "jpg-progressive": jpeg(65_000, 65_000, sof=0xC2),
    "gif": gif(65_535, 65_535),
    "tiff-le-long": tiff([(100_000, 100_000)]),
    "tiff-be-long": tiff([(100_000, 100_000)], order=">"),
    "tiff-be-short": tiff([(60_000, 60_000)], order=">", kind=3),
    "bigtiff": bigtiff(100_000, 100_000),
}


@pytest.mark.parametrize("name", sorted(HUGE_IMAGES))
def test_an_image_header_claiming_billions_of_pixels_is_refused(name, tmp_path) -> None:
    ext = name.split("-")[0].replace("big", "")
    path = write(tmp_path / f"huge.{ext}", HUGE_IMAGES[name])
    with pytest.raises(DocumentTooComplex, match=r"\d+x\d+ = \d+ pixels.*MAX_IMAGE_PIXELS"):
        check_document(path, FORMATS[ext], LIMITS)


@pytest.mark.parametrize(("ext", "data"), [
    ("png", png(100, 100)), ("jpg", jpeg(100, 100)), ("gif", gif(100, 100)),
    ("tiff", tiff([(100, 100)])), ("tiff", tiff([(100, 100)], ">", 3)),
    ("tiff", bigtiff(100, 100)),
])
def test_the_pixel_limit_is_compared_with_the_true_dimensions(ext, data, tmp_path) -> None:
    path = write(tmp_path / f"small.{ext}", data)
    check_document(path, FORMATS[ext], limits(max_image_pixels=10_000))
    with pytest.raises(DocumentTooComplex, match="100x100 = 10000 pixels"):
        check_document(path, FORMATS[ext], limits(max_image_pixels=9_999))


def test_corpus_images_are_measured_by_their_content_not_their_name() -> None:
    jpg = CORPUS / "textract-tests" / "jpg" / "raw_text.jpg"
    with pytest.raises(DocumentTooComplex, match="2000x1850"):
        check_document(jpg, FORMATS["jpg"], limits(max_image_pixels=2000 * 1850 - 1))
    fake_tiff = CORPUS / "textract-tests" / "tiff" / "raw_text.tiff"  # a PNG inside
    with pytest.raises(DocumentTooComplex, match="650x300"):
        check_document(fake_tiff, FORMATS["tiff"], limits(max_image_pixels=1000))


def test_a_gif_frame_larger_than_its_logical_screen_is_measured_by_the_frame(tmp_path) -> None:
    path = write(tmp_path / "frame.gif", gif(1, 1, [(0, 0, 10, 10), (0, 0, 7500, 7500)]))
    started = time.perf_counter()
    with pytest.raises(DocumentTooComplex, match="7500x7500 = 56250000 pixels"):
        check_document(path, FORMATS["gif"], LIMITS)
    assert time.perf_counter() - started < 0.1  # the blocks are walked, nothing is decoded


def test_a_gif_frame_is_measured_to_its_far_corner(tmp_path) -> None:
    path = write(tmp_path / "offset.gif", gif(10, 10, [(0, 0, 10, 10), (60_000, 990, 10, 10)]))
    with pytest.raises(DocumentTooComplex, match="60010x1000 = 60010000 pixels"):
        check_document(path, FORMATS["gif"], LIMITS)


def test_gif_frames_after_large_sub_blocks_and_extensions_are_found(tmp_path) -> None:
    small = gif(10, 10, [(0, 0, 10, 10)])
    comment = b"\x21\xfe" + (b"\xff" + b"c" * 255) * 400 + b"\x00"  # 100 KB of comment
    huge = gif(10, 10, [(0, 0, 8000, 8000)])
    frame_at = huge.index(b"\x21\xf9")
    data = small[:-1] + comment + huge[frame_at:]
    path = write(tmp_path / "late.gif", data)
    with pytest.raises(DocumentTooComplex, match="8000x8000"):
        check_document(path, FORMATS["gif"], LIMITS)


def test_the_frames_of_a_gif_are_counted_together(tmp_path) -> None:
    path = write(tmp_path / "animated.gif", gif(100, 100, [(0, 0, 100, 100)] * 5))
    check_document(path, FORMATS["gif"], limits(max_image_pixels=50_000))
    with pytest.raises(DocumentTooComplex, match="5 frames are 50000 pixels together"):
        check_document(path, FORMATS["gif"], limits(max_image_pixels=49_999))


def test_a_gif_with_more_frames_than_the_page_limit_is_refused(tmp_path) -> None:
    path = write(tmp_path / "many.gif", gif(10, 10, [(0, 0, 10, 10)] * 3))
    check_document(path, FORMATS["gif"], limits(max_pdf_pages=3))
    with pytest.raises(DocumentTooComplex, match="more than 2 pages"):
        check_document(path, FORMATS["gif"], limits(max_pdf_pages=2))


def test_a_tiff_with_more_pages_than_the_limit_is_refused(tmp_path) -> None:
    path = write(tmp_path / "fax.tiff", tiff([(10, 10)] * 3))
    check_document(path, FORMATS["tiff"], limits(max_pdf_pages=3))
    with pytest.raises(DocumentTooComplex, match="more than 2 pages"):
        check_document(path, FORMATS["tiff"], limits(max_pdf_pages=2))


def test_a_tiff_whose_page_chain_loops_is_read_once(tmp_path) -> None:
    data = bytearray(tiff([(10, 10)]))
    struct.pack_into("<I", data, len(data) - 4, 8)  # next IFD: itself
    path = write(tmp_path / "loop.tiff", bytes(data))
    check_document(path, FORMATS["tiff"], limits(max_pdf_pages=1))


@pytest.mark.parametrize(("ext", "data"), [
    ("png", b"\x89PNG\r\n\x1a\n"),
    ("jpg", b"\xff\xd8\xff\xd9"),
    ("jpg", b"\xff\xd8" + b"\xff" * 3_000_000),
    ("jpg", b"\xff\xd8" + b"\xff" * 100 + jpeg(10, 10)[20:]),  # absurd fill before a frame
    ("jpg", b"\xff\xd8\xff\xe0\x00\x10JF"),
    ("gif", b"GIF8"),
    ("tiff", b"II*\x00\xff\xff\x00\x00"),
    ("png", b"not an image at all"),
])
def test_an_unreadable_image_header_is_corrupt(ext, data, tmp_path) -> None:
    path = write(tmp_path / f"broken.{ext}", data)
    started = time.perf_counter()
    with pytest.raises(CorruptDocument, match="image header cannot be read"):
        check_document(path, FORMATS[ext], LIMITS)
    assert time.perf_counter() - started < 0.25  # not one read per byte of padding


# --- PDF ---------------------------------------------------------------------------------
def test_a_pdf_with_more_pages_than_the_limit_is_refused() -> None:
    with pytest.raises(DocumentTooComplex, match=r"4 pages; the limit is 1 \(MAX_PDF_PAGES\)"):
        check_document(FOUR_PAGES, FORMATS["pdf"], limits(max_pdf_pages=1))
    check_document(FOUR_PAGES, FORMATS["pdf"], limits(max_pdf_pages=4))


@pytest.mark.parametrize("broken", [False, True], ids=["catalog", "pdfinfo"])
def test_a_forged_pages_line_in_the_title_does_not_hide_the_real_count(tmp_path, broken
                                                                       ) -> None:
    data = minimal_pdf(3, title="x\nPages: 1\n")
    path = write(tmp_path / "forged.pdf", with_broken_xref(data) if broken else data)
    with pytest.raises(DocumentTooComplex, match="3 pages"):
        check_document(path, FORMATS["pdf"], limits(max_pdf_pages=2))


@pytest.fixture
def pdfinfo_runs(tmp_path, monkeypatch) -> Callable[[], list[str]]:
    """A pdfinfo first on PATH that logs its arguments, then runs the real one; gives the
    arguments of each run so far."""
    bin_dir, runs = tmp_path / "recording-bin", tmp_path / "pdfinfo.runs"
    bin_dir.mkdir()
    fake = bin_dir / "pdfinfo"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(runs))}\n'
                    f'exec {shlex.quote(PDFINFO)} "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return lambda: runs.read_text().splitlines() if runs.exists() else []


def pdfinfo_pages(path: Path) -> int:
    out = subprocess.run([PDFINFO, str(path)], capture_output=True, check=True, timeout=30)
    return int(next(line.split()[1] for line in out.stdout.decode().splitlines()
                    if line.startswith("Pages:")))


PDFS = [pytest.param(d.path, id=d.id) for d in corpus_documents() if d.format == "pdf"]


@pytest.mark.parametrize("path", PDFS)
def test_every_corpus_pdf_is_counted_as_pdfinfo_counts_it_running_it_only_when_large(
        path, pdfinfo_runs) -> None:
    checked = check_document(path, FORMATS["pdf"], LIMITS)
    assert checked.pages == pdfinfo_pages(path)
    if path.stat().st_size <= guards.CATALOG_READ_BYTES:
        assert pdfinfo_runs() == []
        assert isinstance(checked.catalog, Catalog) and checked.catalog.pages == checked.pages
    else:
        assert len(pdfinfo_runs()) == 1 and checked.catalog is None


def test_a_pdf_whose_count_is_above_the_limit_is_refused_without_running_pdfinfo(
        tmp_path, pdfinfo_runs) -> None:
    over = LIMITS.max_pdf_pages + 1
    path = write(tmp_path / "many.pdf", minimal_pdf(over))
    started = time.perf_counter()
    with pytest.raises(DocumentTooComplex,
                       match=rf"{over} pages; the limit is {over - 1} \(MAX_PDF_PAGES\)"):
        check_document(path, FORMATS["pdf"], LIMITS)
    assert time.perf_counter() - started < 1.0
    assert pdfinfo_runs() == []
    # OCR still asks pdfinfo, which prints the page boxes too: the fake does record runs.
    with pytest.raises(DocumentTooComplex, match=rf"{over} pages"):
        check_document(path, FORMATS["pdf"], LIMITS, "tesseract")
    assert len(pdfinfo_runs()) == 1 and "-box" in pdfinfo_runs()[0].split()


def test_a_page_count_bomb_too_big_for_a_quick_catalog_read_is_counted_by_pdfinfo(
        tmp_path, pdfinfo_runs) -> None:
    path = write(tmp_path / "many.pdf", minimal_pdf(20_000))  # a 20,000-entry xref table
    assert path.stat().st_size > guards.CATALOG_READ_BYTES
    started = time.perf_counter()
    with pytest.raises(DocumentTooComplex, match=r"20000 pages; the limit is 2000"):
        check_document(path, FORMATS["pdf"], LIMITS)
    assert time.perf_counter() - started < 1.0
    assert len(pdfinfo_runs()) == 1
    assert check_document(path, FORMATS["pdf"], limits(max_pdf_pages=20_000)).catalog is None


def test_a_pdf_with_a_broken_xref_is_counted_by_pdfinfo(tmp_path, pdfinfo_runs) -> None:
    path = write(tmp_path / "broken-xref.pdf", with_broken_xref(minimal_pdf(6)))
    checked = check_document(path, FORMATS["pdf"], LIMITS)
    assert len(pdfinfo_runs()) == 1
    assert checked.pages == pdfinfo_pages(path) == 6
    assert isinstance(checked.catalog, CatalogUnreadable)
    # the metadata reader parses the guard's pdfinfo output: no second run
    meta = read_metadata(path, FORMATS["pdf"], "", checked=checked)
    assert meta.values["pages"] == 6 and len(pdfinfo_runs()) == 1
    with pytest.raises(DocumentTooComplex, match=r"6 pages; the limit is 5"):
        check_document(path, FORMATS["pdf"], limits(max_pdf_pages=5))
    assert len(pdfinfo_runs()) == 2


@pytest.mark.parametrize("count", ["3.0", "5 0 R", "true", "0", "-4", "8"],
                         ids=["real", "a-dictionary", "boolean", "zero", "negative",
                              "more-than-objects"])
def test_a_count_poppler_would_not_take_is_left_to_pdfinfo(tmp_path, pdfinfo_runs, count
                                                            ) -> None:
    # 3 pages, 7 objects: poppler reads /Count 3.0 as 3 and the others as no pages at all.
    path = write(tmp_path / "odd-count.pdf", minimal_pdf(3, count=count))
    try:
        expected: int | str = pdfinfo_pages(path)
    except subprocess.CalledProcessError as exc:
        expected = exc.stderr.decode().strip().splitlines()[-1]
    if isinstance(expected, int):
        assert check_document(path, FORMATS["pdf"], LIMITS).pages == expected
    else:
        with pytest.raises(CorruptDocument,
                           match=f"^the PDF cannot be read: {re.escape(expected)}$"):
            check_document(path, FORMATS["pdf"], LIMITS)
    assert len(pdfinfo_runs()) == 1


def test_a_pdf_whose_info_refers_to_itself_is_counted_by_pdfinfo(tmp_path, pdfinfo_runs
                                                                 ) -> None:
    path = write(tmp_path / "loop.pdf", info_loop_pdf())
    started = time.perf_counter()
    checked = check_document(path, FORMATS["pdf"], LIMITS)
    assert time.perf_counter() - started < 1.0
    assert checked.pages == 1 and len(pdfinfo_runs()) == 1
    assert isinstance(checked.catalog, CatalogUnreadable)


@pytest.mark.parametrize("data", [
    b"%PDF-1.4\ngarbage",
    FOUR_PAGES.read_bytes()[:1000] if FOUR_PAGES.exists() else b"%PDF-1.5\n",
    b"",
])
def test_a_garbage_or_truncated_pdf_is_corrupt(data, tmp_path) -> None:
    path = write(tmp_path / "broken.pdf", data)
    with pytest.raises(CorruptDocument, match="PDF cannot be read"):
        check_document(path, FORMATS["pdf"], LIMITS)


@pytest.mark.skipif(shutil.which("gs") is None, reason="ghostscript (gs) is not installed")
def test_a_pdf_that_needs_a_user_password_is_reported_as_encrypted(tmp_path, pdfinfo_runs
                                                                    ) -> None:
    path = tmp_path / "locked.pdf"
    subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=pdfwrite",
                    "-sOwnerPassword=owner", "-sUserPassword=user", f"-sOutputFile={path}",
                    str(CORPUS / "textract-tests" / "pdf" / "standardized_text.pdf")],
                   check=True, timeout=60)
    with pytest.raises(EncryptedDocument, match="needs a password"):
        check_document(path, FORMATS["pdf"], LIMITS)
    assert len(pdfinfo_runs()) == 1  # pdfminer stops at the password; pdfinfo tells why


def test_without_pdfinfo_page_objects_are_counted_in_the_bytes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    # A broken xref: pdfminer cannot count it, so pdfinfo would have.
    path = write(tmp_path / "three.pdf", with_broken_xref(minimal_pdf(3)))
    check_document(path, FORMATS["pdf"], limits(max_pdf_pages=3))
    with pytest.raises(DocumentTooComplex, match="3 pages"):
        check_document(path, FORMATS["pdf"], limits(max_pdf_pages=2))
    with pytest.raises(CorruptDocument, match="no %PDF- header"):
        check_document(write(tmp_path / "x.pdf", b"hello"), FORMATS["pdf"], LIMITS)


@pytest.mark.parametrize("method", ["", "tesseract"])
def test_a_hanging_pdfinfo_is_cut_off_by_its_timeout(tmp_path, monkeypatch, method) -> None:
    # Without OCR, pdfinfo only reads what pdfminer cannot: a broken xref.
    path = write(tmp_path / "broken-xref.pdf", with_broken_xref(minimal_pdf(6)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pdfinfo"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(guards, "PDFINFO_TIMEOUT", 0.3)
    started = time.perf_counter()
    with pytest.raises(DocumentTooComplex, match=r"took more than 0\.3 s"):
        check_document(path, FORMATS["pdf"], LIMITS, method)
    assert time.perf_counter() - started < 5


# --- HTML nesting -------------------------------------------------------------------------
def deep_html(depth: int, tag: str = "div") -> bytes:
    return (b"<html><body>" + f"<{tag}>".encode() * depth + b"x"
            + f"</{tag}>".encode() * depth + b"</body></html>")


def test_an_html_of_100000_nested_divs_is_refused_at_once(tmp_path) -> None:
    path = write(tmp_path / "deep.html", deep_html(100_000))  # 1.1 MB; textract: hours
    started = time.perf_counter()
    with pytest.raises(DocumentTooComplex, match=r"more than 256 elements deep; the limit "
                                                 r"is 256 \(MAX_NESTING_DEPTH\)"):
        check_document(path, FORMATS["html"], LIMITS)
    assert time.perf_counter() - started < 0.5


def test_the_nesting_depth_limit_is_the_configured_figure(tmp_path) -> None:
    path = write(tmp_path / "deep.htm", deep_html(40, tag="span"))
    check_document(path, FORMATS["htm"], limits(max_nesting_depth=40))
    with pytest.raises(DocumentTooComplex, match="MAX_NESTING_DEPTH"):
        check_document(path, FORMATS["htm"], limits(max_nesting_depth=39))


def test_many_towers_of_nested_elements_are_refused_by_their_total(tmp_path) -> None:
    # 130 towers of 250 <div>: never past the depth limit, 4.08 M element-ancestor pairs.
    tower = b"<div>" * 250 + b"x" + b"</div>" * 250
    path = write(tmp_path / "towers.html", b"<html><body>" + tower * 130 + b"</body></html>")
    with pytest.raises(DocumentTooComplex, match=r"the limit is 4000000 \(MAX_NESTING_WORK\)"):
        check_document(path, FORMATS["html"], LIMITS)
    check_document(write(tmp_path / "fewer.html", tower * 120), FORMATS["html"], LIMITS)


def test_deep_html_in_utf16_is_measured_too(tmp_path) -> None:
    path = write(tmp_path / "deep.html", deep_html(1000).decode().encode("utf-16"))
    with pytest.raises(DocumentTooComplex, match="MAX_NESTING_DEPTH"):
        check_document(path, FORMATS["html"], LIMITS)


@pytest.mark.parametrize("body", [
    b"<p>para" * 100_000,  # a parser closes each <p> when the next opens
    b"<ul>" + b"<li>item" * 100_000 + b"</ul>",
    b"<br><img src=x><hr/>" * 50_000,  # void elements hold nothing
    b"<div/>" * 50_000,  # self-closed
    b"<script>" + b"<div>" * 10_000 + b"</script>",  # markup in a script is text
    b"<!--" + b"<div>" * 10_000 + b"-->",
    b"<div>" + b"<b>bold</B>" * 10_000 + b"</div>",  # end tags in any case
    b"<div><span>x</div>" * 10_000,  # an end tag closes what it encloses
])
def test_html_that_does_not_nest_passes_whatever_its_size(body, tmp_path) -> None:
    check_document(write(tmp_path / "flat.html", b"<html><body>" + body),
                   FORMATS["html"], LIMITS)


# --- PDF drawing instructions ----------------------------------------------------------------
def noisy(operator: bytes, count: int) -> bytes:
    """`count` operators, each followed by a random comment: compresses like real content."""
    return b"".join(operator + b" %" + os.urandom(6).hex().encode() + b"\n"
                    for _ in range(count))


def test_a_tiny_pdf_of_millions_of_operators_is_refused_by_its_inflation(tmp_path) -> None:
    # 5 M `q` in two Flate layers: 570 bytes; pdftotext took 4.7 GB and 13 s on it.
    path = write(tmp_path / "bomb.pdf", drawing_pdf(b"q " * 5_000_000, layers=2))
    assert path.stat().st_size < 1000
    started = time.perf_counter()
    with pytest.raises(DocumentTooComplex, match=r"inflates more than 200 times "
                                                 r"\(MAX_COMPRESSION_RATIO\)"):
        check_document(path, FORMATS["pdf"], LIMITS)
    assert time.perf_counter() - started < 1.0


def test_graphics_states_saved_without_restoring_are_bounded(tmp_path) -> None:
    path = write(tmp_path / "states.pdf", drawing_pdf(noisy(b"q", 10_001)))
    with pytest.raises(DocumentTooComplex, match=r"saves its graphics state 10001 times "
                                                 r"without restoring it; the limit is 10000 "
                                                 r"\(MAX_PDF_STATE_DEPTH\)"):
        check_document(path, FORMATS["pdf"], LIMITS)
    balanced = noisy(b"q", 200) + noisy(b"Q", 200)
    check_document(write(tmp_path / "ok.pdf", drawing_pdf(balanced * 50)), FORMATS["pdf"],
                   limits(max_pdf_state_depth=200))


@pytest.mark.parametrize("content", [
    b"q q Q q\tq\rQ\nQ Q", b"q/GS0 gs q[1 2]0 d Q q(q)Tj Q", b"qq Q q% q\nQ", b"1 q Q 0 Q q<q>",
    noisy(b"q", 300) + noisy(b"0 0 m 1 1 l S", 50) + noisy(b"Q", 120)])
def test_the_nesting_measured_alone_is_the_nesting_measured_with_the_paths(
        content: bytes) -> None:
    data = drawing_pdf(content, content[::-1])
    alone = pdf_content.measure(data, 1 << 30, 1000, paths=False)
    both = pdf_content.measure(data, 1 << 30, 1000)
    assert (alone.deepest_state, alone.longest_path) == (both.deepest_state, 0)


def test_every_corpus_pdf_nests_as_deep_measured_alone_as_with_its_paths() -> None:
    for doc in (d for d in corpus_documents() if d.format == "pdf"):
        data = doc.path.read_bytes()
        alone = pdf_content.measure(data, 1 << 30, 1000, paths=False)
        assert alone.deepest_state == pdf_content.measure(data, 1 << 30, 1000).deepest_state


def test_saved_states_are_counted_across_a_pages_content_streams(tmp_path) -> None:
    path = write(tmp_path / "split.pdf", drawing_pdf(noisy(b"q", 60), noisy(b"q", 60)))
    check_document(path, FORMATS["pdf"], limits(max_pdf_state_depth=120))
    with pytest.raises(DocumentTooComplex, match="120 times"):
        check_document(path, FORMATS["pdf"], limits(max_pdf_state_depth=119))


def test_a_path_of_too_many_segments_before_painting_is_refused(tmp_path) -> None:
    segments = noisy(b"0 0 m", 1) + noisy(b"1 1 l", 999) + b"S\n"
    path = write(tmp_path / "path.pdf", drawing_pdf(segments * 20))  # 20 paths, painted
    check_document(path, FORMATS["pdf"], limits(max_pdf_path_segments=1000))
    with pytest.raises(DocumentTooComplex, match=r"a path of 1000 segments; the limit is 999 "
                                                 r"\(MAX_PDF_PATH_SEGMENTS\)"):
        check_document(path, FORMATS["pdf"], limits(max_pdf_path_segments=999))


def test_the_inflated_drawing_instructions_are_bounded(tmp_path) -> None:
    path = write(tmp_path / "big.pdf", drawing_pdf(noisy(b"0 0 m 1 1 l S", 100_000)))
    with pytest.raises(DocumentTooComplex, match=r"inflate to more than 1000000 bytes "
                                                 r"\(MAX_PDF_CONTENT_BYTES\)"):
        check_document(path, FORMATS["pdf"], limits(max_pdf_content_bytes=1_000_000))
    check_document(path, FORMATS["pdf"], LIMITS)


def test_names_and_image_pixels_are_not_counted_as_drawing_instructions(tmp_path) -> None:
    text = b"BT /q 12 Tf (q) Tj /Q1 gs /b 1 Tf ET\n" * 1000
    path = write(tmp_path / "text.pdf", drawing_pdf(text))
    check_document(path, FORMATS["pdf"], limits(max_pdf_state_depth=1))
    image = drawing_pdf(b"q " * 5_000_000).replace(b"<< /Length",
                                                   b"<< /Subtype /Image /Length", 1)
    path = write(tmp_path / "image.pdf", image)  # an image's pixels are not instructions
    check_document(path, FORMATS["pdf"], LIMITS)


# --- PDF pages rendered for OCR ----------------------------------------------------------
INCHES_60 = "0 0 4320 4320"  # 60 x 60 inches: 9000 x 9000 pixels at 150 dpi


def test_a_pdf_with_a_huge_page_is_refused_for_ocr_before_rendering(tmp_path) -> None:
    path = write(tmp_path / "poster.pdf", minimal_pdf(1, box=INCHES_60))
    started = time.perf_counter()
    with pytest.raises(DocumentTooComplex,
                       match=r"page 1 renders for OCR at 150 dpi as 9000x9000 = 81000000 "
                             r"pixels; the limit is 50000000 \(MAX_IMAGE_PIXELS\)"):
        check_document(path, FORMATS["pdf"], LIMITS, "tesseract")
    assert time.perf_counter() - started < 1.0
    for method in ("", "pdftotext", "pdfminer"):  # nothing is rendered: nothing to refuse
        check_document(path, FORMATS["pdf"], LIMITS, method)


def test_the_rendered_size_is_the_one_pdftoppm_makes(tmp_path) -> None:
    # 100 x 50 points away from the origin: pdftoppm makes 209 x 105 = 21945 pixels.
    path = write(tmp_path / "small.pdf", minimal_pdf(1, box="-20 -10 80 40"))
    check_document(path, FORMATS["pdf"], limits(max_image_pixels=21_945), "tesseract")
    with pytest.raises(DocumentTooComplex, match="209x105 = 21945 pixels"):
        check_document(path, FORMATS["pdf"], limits(max_image_pixels=21_944), "tesseract")
    out = tmp_path / "page"
    subprocess.run(["pdftoppm", str(path), str(out)], check=True, timeout=30)
    ppm = next(tmp_path.glob("page*.ppm")).read_bytes()
    assert ppm.split(b"\n")[1] == b"209 105"


def test_a_huge_mediabox_under_a_small_cropbox_is_measured_by_the_mediabox(tmp_path) -> None:
    data = minimal_pdf(1, box=INCHES_60).replace(b"/MediaBox", b"/CropBox [0 0 72 72] /MediaBox")
    path = write(tmp_path / "cropped.pdf", data)  # pdftoppm renders the MediaBox
    with pytest.raises(DocumentTooComplex, match="9000x9000"):
        check_document(path, FORMATS["pdf"], LIMITS, "tesseract")


def test_the_pixels_of_all_pages_rendered_for_ocr_are_bounded(tmp_path) -> None:
    path = write(tmp_path / "a4.pdf", minimal_pdf(40, box="0 0 595 842"))  # 1240x1755 each
    check_document(path, FORMATS["pdf"], LIMITS, "tesseract")  # 87 M pixels in all
    with pytest.raises(DocumentTooComplex, match=r"the limit is 80000000 \(MAX_OCR_PIXELS\)"):
        check_document(path, FORMATS["pdf"], limits(max_ocr_pixels=80_000_000), "tesseract")


def test_a_forged_page_line_in_the_title_does_not_hide_a_huge_page(tmp_path) -> None:
    forged = "x\nPage    1 MediaBox:      0.00     0.00    10.00    10.00\nPages: 1\n"
    path = write(tmp_path / "forged.pdf", minimal_pdf(2, title=forged, box=INCHES_60))
    with pytest.raises(DocumentTooComplex, match="9000x9000"):
        check_document(path, FORMATS["pdf"], LIMITS, "tesseract")


def test_every_corpus_pdf_passes_the_ocr_checks() -> None:
    pdfs = sorted(CORPUS.rglob("*.pdf"))
    assert len(pdfs) >= 10
    for path in pdfs:
        check_document(path, FORMATS["pdf"], LIMITS, "tesseract")


# --- formats without guards and the text size ----------------------------------------------
def test_formats_without_a_container_pass_untouched(tmp_path) -> None:
    path = write(tmp_path / "a.csv", b"\x00" * 100)  # content is detect_bytes()'s business
    for ext in ("csv", "txt", "eml", "msg", "doc", "rtf", "ps"):
        check_document(path, FORMATS[ext], LIMITS)


def test_text_above_max_text_bytes_is_refused_counting_utf8_bytes() -> None:
    small = limits(max_text_bytes=10)
    check_text_size("x" * 10, small)
    check_text_size("é" * 5, small)
    for text in ("x" * 11, "é" * 6):
        with pytest.raises(DocumentTooComplex, match=r"the limit is 10 \(MAX_TEXT_BYTES\)"):
            check_text_size(text, small)


def test_a_large_text_is_measured_in_slices_and_refused() -> None:
    text = "ab€" * 1_000_000  # 3 M characters, 5 MB of UTF-8
    check_text_size(text, limits(max_text_bytes=5_000_000))
    with pytest.raises(DocumentTooComplex, match="5000000 bytes"):
        check_text_size(text, limits(max_text_bytes=4_999_999))


# --- no path in a message or a text --------------------------------------------------------
# A PostScript program printing the name of a temporary file Ghostscript makes for it in
# TMPDIR, which -dSAFER allows: on the page and on stdout, both of which ps2ascii returns.
PS_TEMPFILE = (b"%!PS\n/Courier findfont 12 scalefont setfont 72 700 moveto\n"
               b"null (w) .tempfile pop dup = show showpage\n")


@pytest.fixture
def spool(tmp_path, monkeypatch) -> Path:
    """A folder laid out like a worker's: TMPDIR inside it, as the child sets it."""
    folder = tmp_path / "install" / "var" / "spool" / "slot-1"
    (folder / "tmp").mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(folder / "tmp"))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    return folder


def test_an_error_message_names_the_document_not_its_path(spool) -> None:
    path = write(spool / "0123abcd.gif", gif(10, 10) + b"garbage" * 10)
    check_document(path, FORMATS["gif"], LIMITS)  # the header is fine: the decoder fails
    with pytest.raises(CorruptDocument) as caught:
        extract_text(path, "gif")
    assert "the document" in str(caught.value)
    assert "/" not in str(caught.value), str(caught.value)


def test_a_pdfinfo_error_names_no_path(spool, tmp_path, monkeypatch) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    # as poppler words it, naming the file: the last argument (options come first)
    (tools / "pdfinfo").write_text('#!/bin/sh\nfor last; do :; done\n'
                                   'echo "I/O Error: Couldn\'t open file \'$last\'" >&2\n'
                                   "exit 1\n")
    (tools / "pdfinfo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    path = write(spool / "0123abcd.pdf", with_broken_xref(minimal_pdf(1)))
    with pytest.raises(CorruptDocument,
                       match=r"^the PDF cannot be read: I/O Error: Couldn't open file "
                             r"the document$"):
        check_document(path, FORMATS["pdf"], LIMITS)


@pytest.mark.parametrize(("message", "expected"), [
    ("cannot identify image file '/srv/t/var/spool/slot-1/ab.gif'",
     "cannot identify image file the document"),
    ("cannot open /srv/t/var/spool/slot-1/tmp/tmpx/conv-1.ppm: no such file",
     "cannot open a temporary file: no such file"),
    ("missing module at /usr/lib/python3/dist-packages/x.py", "missing module at a file"),
    ("I/O error in </w:body> of application/pdf", "I/O error in </w:body> of application/pdf"),
])
def test_paths_in_messages_are_said_by_their_role(message, expected) -> None:
    assert without_paths(message, "/srv/t/var/spool/slot-1/ab.gif") == expected


@pytest.mark.skipif(shutil.which("ps2ascii") is None, reason="ghostscript is not installed")
@pytest.mark.parametrize("seconds", [None, 30])  # through textract, and under a CPU limit
def test_postscript_cannot_print_the_spool_path_into_its_text(spool, seconds) -> None:
    path = write(spool / "0123abcd.ps", PS_TEMPFILE)
    text = extract_text(path, "ps", postscript_seconds=seconds)
    assert "temporary file" in text  # the program ran and printed a name
    assert str(spool) not in text and "install" not in text, text


# --- PostScript under a CPU limit ------------------------------------------------------------
needs_gs = pytest.mark.skipif(shutil.which("gs") is None, reason="ghostscript is not installed")


@needs_gs
def test_a_postscript_program_that_never_ends_is_stopped_by_its_cpu_limit(tmp_path) -> None:
    path = write(tmp_path / "loop.ps", b"%!PS\n{ } loop\n")  # 16 bytes
    started = time.perf_counter()
    with pytest.raises(DocumentTooComplex, match=r"ran for more than 1 s of CPU; the limit "
                                                 r"is 1 \(MAX_POSTSCRIPT_SECONDS\)"):
        extract_text(path, "ps", postscript_seconds=1)
    assert time.perf_counter() - started < 10  # CPU seconds, on a busy machine


@needs_gs
@pytest.mark.parametrize("name", ["raw_text.ps", "standardized_text.ps"])
def test_postscript_under_the_cpu_limit_reads_as_textract_reads_it(name) -> None:
    path = CORPUS / "textract-tests" / "ps" / name
    assert extract_text(path, "ps", postscript_seconds=30) == extract_text(path, "ps")


@needs_gs
def test_a_broken_postscript_program_is_a_corrupt_document(tmp_path) -> None:
    path = write(tmp_path / "broken.ps", b"%!PS\n(unclosed string\n")
    with pytest.raises(CorruptDocument, match=r"^gs rejected the document"):
        extract_text(path, "ps", postscript_seconds=30)


def test_without_ghostscript_postscript_is_an_unavailable_extractor(tmp_path,
                                                                    monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    path = write(tmp_path / "a.ps", b"%!PS\nshowpage\n")
    with pytest.raises(ExtractorUnavailable, match="gs is not installed"):
        extract_text(path, "ps", postscript_seconds=30)


def test_a_text_naming_shared_folders_is_left_as_it_is(spool) -> None:
    path = write(spool / "0123abcd.txt", b"see /tmp/x and /var/tmp/y and /usr/share/z\n")
    assert extract_text(path, "txt") == "see /tmp/x and /var/tmp/y and /usr/share/z\n"


def _reading(opened, n: int) -> tuple[str, bytes | str]:
    """What reading an entry's first n bytes gives: the bytes, or the kind of failure."""
    try:
        with opened() as f:
            return "bytes", f.read(n)
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError) as exc:
        return "error", type(exc).__name__


def test_an_entrys_first_bytes_read_from_memory_are_what_zipfile_reads_even_corrupted(
        ) -> None:
    """The guard's own reader of entry starts against zipfile's, on every ZIP-based corpus
    document and 3,000 copies of them with bytes flipped inside the entries' data."""
    rnd = random.Random(18)
    archives = [d.path.read_bytes() for d in corpus_documents()
                if d.format in ("docx", "xlsx", "pptx", "odt", "ods", "epub")]
    variants = list(archives)
    for _ in range(3000):
        data = bytearray(rnd.choice(archives))
        end = data.find(b"PK\x01\x02")  # where the central directory starts
        for _ in range(rnd.randint(1, 4)):  # in the entries, not the central directory
            data[rnd.randrange(0, max(1, end))] ^= 1 << rnd.randrange(8)
        variants.append(bytes(data))
    compared = 0
    for data in variants:
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, NotImplementedError):
            continue  # the guard refuses it before reading any entry
        for info in zf.infolist():
            if not guards._EntryStart.reads(info) or info.is_dir() or not info.file_size:
                continue  # as the guard skips them
            for n in (512, 8192):
                mine = _reading(functools.partial(guards._EntryStart, data, info), n)
                theirs = _reading(functools.partial(zf.open, info), n)
                # Same bytes when zipfile reads them; a failure when zipfile fails (its
                # CRC is checked on a 4 KB read ahead, ours only at the entry's end).
                assert mine[0] == theirs[0] or (mine[0] == "bytes" and n < info.file_size), \
                    (info.filename, n, mine, theirs)
                if theirs[0] == "bytes":
                    assert mine == theirs, (info.filename, n)
                compared += 1
    assert compared > 10_000
