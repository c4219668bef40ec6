"""Format table and type detection, on the real corpus and on hostile names and content."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import zipfile
from pathlib import Path

import pytest

from daemon.documents.extract import extract
from daemon.documents.formats import (
    FORMATS,
    HEAD_SIZE,
    InvalidMethod,
    detect_bytes,
    extension_of,
    family_for,
    safe_display_name,
    supported_formats,
)
from daemon.errors import EncryptedDocument, UnsupportedFormat
from tests.bombs import minimal_pdf
from tests.conftest import CORPUS, manifest_params

DOCS = manifest_params()
NO_EXT_DOCS = [row for row in DOCS if row.values[2]]

PDF_HEAD = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"
PNG_HEAD = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
            + struct.pack(">IIBBBBB", 10, 10, 8, 0, 0, 0, 0) + b"\0\0\0\0")
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def head_of(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(HEAD_SIZE)


def ole_head(*entries: tuple[str, int]) -> bytes:
    """An OLE2 header followed by directory entries (name, type), where a head shows them."""
    head = bytearray(OLE_MAGIC + bytes(504))
    for name, kind in entries:
        entry = bytearray(128)
        raw = name.encode("utf-16-le") + b"\0\0"
        entry[: len(raw)] = raw
        struct.pack_into("<HB", entry, 64, len(raw), kind)
        head += entry
    return bytes(head)


# --- the corpus ------------------------------------------------------------------------
def test_the_corpus_is_present_and_lists_documents() -> None:
    assert len(DOCS) >= 60, f"no corpus at {CORPUS}: set TEXTRACTD_CORPUS"


@pytest.mark.parametrize(("doc", "fmt", "ext"), DOCS)
def test_every_corpus_document_is_detected_as_its_manifest_format(doc, fmt, ext) -> None:
    path = CORPUS / doc
    assert detect_bytes(path.name, head_of(path), ext).ext == fmt
    assert detect_bytes(path.name, path.read_bytes(), ext).ext == fmt


@pytest.mark.parametrize(("doc", "fmt", "ext"), NO_EXT_DOCS)
def test_corpus_files_without_extension_are_recognised_by_content_alone(doc, fmt, ext) -> None:
    path = CORPUS / doc
    assert "." not in path.name
    assert detect_bytes(None, path.read_bytes()).ext == fmt
    assert detect_bytes(path.name, path.read_bytes()).ext == fmt
    assert detect_bytes(None, head_of(path)).ext == fmt  # their first 8 KB already tell


@pytest.mark.parametrize(("doc", "fmt", "ext"), DOCS)
def test_content_alone_identifies_every_corpus_document_up_to_text_flavours(doc, fmt, ext
                                                                           ) -> None:
    by_content = {"tiff": "png", "csv": "txt", "tsv": "txt", "psv": "txt", "json": "txt",
                  "eml": "txt", "txt": "txt"}
    assert detect_bytes(None, (CORPUS / doc).read_bytes()).ext == by_content.get(fmt, fmt)


def test_the_corpus_tiff_files_are_png_images_and_are_still_accepted_as_tiff() -> None:
    tiffs = sorted((CORPUS / "textract-tests" / "tiff").glob("*.tiff"))
    assert tiffs
    for path in tiffs:
        assert head_of(path).startswith(b"\x89PNG\r\n\x1a\n")
        assert detect_bytes(path.name, head_of(path)).ext == "tiff"


def test_the_formats_table_covers_every_non_audio_corpus_format() -> None:
    assert {row.values[1] for row in DOCS} <= set(FORMATS)


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_every_format_in_the_table_has_a_textract_parser(ext) -> None:
    from textract.parsers import EXTENSION_SYNONYMS

    routed = EXTENSION_SYNONYMS.get("." + ext, "." + ext)[1:]
    assert importlib.util.find_spec(f"textract.parsers.{routed}_parser") is not None


# --- contradictions and unknown content --------------------------------------------------
def test_a_png_named_pdf_is_refused_as_contradictory() -> None:
    with pytest.raises(UnsupportedFormat, match=r"says \.pdf but .* PNG image"):
        detect_bytes("scan.pdf", PNG_HEAD)


def test_a_pdf_named_docx_is_refused_because_it_is_not_a_zip() -> None:
    with pytest.raises(UnsupportedFormat, match=r"\.docx but .* PDF document"):
        detect_bytes("report.docx", PDF_HEAD)


def test_an_xlsx_named_docx_is_refused_as_contradictory() -> None:
    path = CORPUS / "textract-tests" / "xlsx" / "raw_text.xlsx"
    with pytest.raises(UnsupportedFormat, match=r"\.docx but .*\(xlsx\)"):
        detect_bytes("report.docx", head_of(path))
    with pytest.raises(UnsupportedFormat, match=r"\.docx but .*\(xlsx\)"):
        detect_bytes("report.docx", path.read_bytes())


def test_a_word_97_document_named_xls_is_refused_after_looking_at_its_streams() -> None:
    path = CORPUS / "textract-tests" / "doc" / "raw_text.doc"
    assert detect_bytes("sheet.xls", head_of(path)).ext == "xls"  # first 8 KB: no stream names
    with pytest.raises(UnsupportedFormat, match=r"\.xls but .* Word 97-2003"):
        detect_bytes("sheet.xls", path.read_bytes())


def test_an_outlook_message_named_doc_is_refused_from_its_head() -> None:
    path = CORPUS / "textract-tests" / "msg" / "standardized_text.msg"
    with pytest.raises(UnsupportedFormat, match=r"\.doc but .* Outlook"):
        detect_bytes("letter.doc", head_of(path))


def test_a_password_protected_office_file_is_reported_as_encrypted() -> None:
    head = ole_head(("Root Entry", 5), ("EncryptionInfo", 2), ("EncryptedPackage", 2))
    with pytest.raises(EncryptedDocument, match="password"):
        detect_bytes("secret.docx", head)
    with pytest.raises(EncryptedDocument):
        detect_bytes(None, head)


def test_an_ole_file_whose_streams_are_beyond_the_head_needs_a_name() -> None:
    path = CORPUS / "textract-tests" / "doc" / "raw_text.doc"
    with pytest.raises(UnsupportedFormat, match="OLE2 compound file") as caught:
        detect_bytes(None, head_of(path))
    assert "extension" in str(caught.value)
    assert detect_bytes(None, path.read_bytes()).ext == "doc"


def test_a_powerpoint_97_file_is_refused_by_name() -> None:
    head = ole_head(("Root Entry", 5), ("PowerPoint Document", 2))
    with pytest.raises(UnsupportedFormat, match="ppt"):
        detect_bytes("slides.ppt", head)


def test_a_zip_without_office_parts_is_refused_without_extension(tmp_path) -> None:
    path = tmp_path / "archive"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", "hello")
    with pytest.raises(UnsupportedFormat, match="ZIP archive not recognised"):
        detect_bytes(None, path.read_bytes())
    assert detect_bytes("notes.docx", path.read_bytes()).ext == "docx"  # the extension picks


def test_zip_documents_whose_parts_lie_beyond_the_head_are_read_from_the_directory(
        tmp_path) -> None:
    filler = os.urandom(HEAD_SIZE * 2)  # incompressible: pushes later names past the head
    docx = tmp_path / "docx"
    with zipfile.ZipFile(docx, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("docProps/thumbnail.jpeg", filler)
        zf.writestr("word/document.xml", "<w:document/>")
    odt = tmp_path / "odt"
    with zipfile.ZipFile(odt, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Thumbnails/thumbnail.png", filler)
        zf.writestr("mimetype", "application/vnd.oasis.opendocument.text")
    for path, ext in ((docx, "docx"), (odt, "odt")):
        with pytest.raises(UnsupportedFormat, match="ZIP archive"):
            detect_bytes(None, head_of(path))
        assert detect_bytes(None, path.read_bytes()).ext == ext
    with pytest.raises(UnsupportedFormat, match=r"\.xlsx but .*\(docx\)"):
        detect_bytes("book.xlsx", docx.read_bytes())


def test_a_binary_file_named_txt_is_refused() -> None:
    with pytest.raises(UnsupportedFormat, match=r"\.txt but .* binary data"):
        detect_bytes("notes.txt", b"abc\x00\x01\x02")


def test_an_unknown_extension_with_unknown_content_is_refused() -> None:
    with pytest.raises(UnsupportedFormat, match="'exe' is not supported"):
        detect_bytes("setup.exe", b"MZ\x90\x00\x03\x00\x00\x00")


def test_unknown_content_without_a_name_is_refused() -> None:
    with pytest.raises(UnsupportedFormat, match="binary data of an unknown type"):
        detect_bytes(None, b"\x00\x01\x02garbage")


def test_an_unknown_extension_with_recognisable_content_is_detected_by_content() -> None:
    assert detect_bytes("download.bin", PDF_HEAD).ext == "pdf"
    assert detect_bytes("photo.webp", PNG_HEAD).ext == "png"


def test_an_unknown_extension_on_text_is_refused_with_a_hint() -> None:
    with pytest.raises(UnsupportedFormat, match="extension=txt"):
        detect_bytes("README.md", b"# Title\n")


def test_an_audio_extension_is_refused_as_out_of_scope() -> None:
    with pytest.raises(UnsupportedFormat, match="audio"):
        detect_bytes("talk.mp3", b"ID3\x03\x00\x00\x00\x00\x00\x00", "mp3")


# --- accepted shapes -----------------------------------------------------------------------
def test_text_without_a_name_is_txt_and_html_without_a_name_is_html() -> None:
    assert detect_bytes(None, b"just words\n").ext == "txt"
    assert detect_bytes(None, b"\xef\xbb\xbf  <!DOCTYPE HTML><html>").ext == "html"
    assert detect_bytes(None, b"<html><body>x").ext == "html"


@pytest.mark.parametrize("ext", ["txt", "csv", "tsv", "psv", "json", "html", "htm", "eml"])
def test_text_formats_are_accepted_by_their_extension(ext) -> None:
    assert detect_bytes(f"data.{ext}", b"a,b\n1,2\n").ext == ext


def test_an_empty_text_file_is_accepted_but_an_empty_pdf_is_not() -> None:
    assert detect_bytes("empty.txt", b"").ext == "txt"
    with pytest.raises(UnsupportedFormat):
        detect_bytes("empty.pdf", b"")


def test_a_pdf_with_junk_before_its_header_is_accepted_when_named_pdf() -> None:
    assert detect_bytes("odd.pdf", b"\r\n\r\n" + PDF_HEAD).ext == "pdf"


def test_image_extensions_accept_any_image_content() -> None:
    assert detect_bytes("scan.jpeg", PNG_HEAD).ext == "jpeg"
    assert detect_bytes("scan.tif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00").ext == "tif"


def test_a_declared_extension_overrides_the_file_name() -> None:
    assert detect_bytes("upload.txt", PDF_HEAD, "pdf").ext == "pdf"
    assert detect_bytes("upload", PDF_HEAD, ".PDF").ext == "pdf"
    with pytest.raises(UnsupportedFormat, match=r"extension parameter says \.docx"):
        detect_bytes("upload.pdf", PDF_HEAD, "docx")


@pytest.mark.parametrize("declared", ["exe", "../pdf", "p\x00df", "a" * 30, "pdf\udce9"])
def test_a_declared_extension_that_is_not_supported_is_refused(declared) -> None:
    with pytest.raises(UnsupportedFormat, match="is not supported") as caught:
        detect_bytes("x.pdf", PDF_HEAD, declared)
    assert str(caught.value).isprintable()


# --- hostile names ---------------------------------------------------------------------
HOSTILE_NAMES = [
    "../../etc/passwd.pdf",
    "..\\..\\windows\\system32\\x.pdf",
    "a\x00b.pdf",
    "bad\x1b[31mred\x07.pdf",
    "x" * 5000 + ".pdf",
    b"caf\xe9.pdf".decode("utf-8", "surrogateescape"),
    "\u202egnp.pdf",
    "REPORT.PDF",
    "report.pdf. ",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_file_names_still_yield_their_final_extension(name) -> None:
    assert extension_of(name) == "pdf"
    assert detect_bytes(name, PDF_HEAD).ext == "pdf"


@pytest.mark.parametrize("name", ["x.pdf\x00", "x.p/df", "x." + "a" * 11, "x.pd\udce9",
                                  ".pdf", "noext", "x.\u212a", "dir.pdf/", "", None])
def test_names_without_a_clean_extension_have_none(name) -> None:
    assert extension_of(name) is None


def test_a_name_with_a_bad_extension_falls_back_to_the_content() -> None:
    assert detect_bytes("x.p\x00df", PDF_HEAD).ext == "pdf"
    assert detect_bytes("evil.pdf\x00.exe", PNG_HEAD).ext == "png"


@pytest.mark.parametrize("name", [*HOSTILE_NAMES, b"caf\xe9\x00.pdf", "..", "/", "\x00" * 300])
def test_safe_display_names_are_printable_short_and_without_directories(name) -> None:
    shown = safe_display_name(name)
    assert shown.isprintable()
    assert "/" not in shown and "\\" not in shown and "\x00" not in shown
    assert len(shown) <= 255
    shown.encode("utf-8")  # no lone surrogates left


def test_safe_display_name_keeps_what_is_safe_and_replaces_the_rest() -> None:
    assert safe_display_name("../../etc/passwd") == "passwd"
    assert safe_display_name("C:\\Users\\x\\report.docx") == "report.docx"
    assert safe_display_name("a\x00b\x1fc\x7f.txt") == "a_b_c_.txt"
    assert safe_display_name(b"caf\xe9.pdf") == "caf\ufffd.pdf"
    assert safe_display_name(b"caf\xe9.pdf".decode("utf-8", "surrogateescape")) == "caf_.pdf"
    assert safe_display_name("\u202egnp.pdf") == "_gnp.pdf"
    assert safe_display_name("Grüße über alles.pdf") == "Grüße über alles.pdf"
    assert safe_display_name(None) == "" and safe_display_name("..") == ""


def test_a_long_display_name_is_cut_to_255_characters_keeping_the_extension() -> None:
    shown = safe_display_name("x" * 5000 + ".pdf")
    assert len(shown) == 255 and shown.endswith("x.pdf")


# --- families, methods and the public table ------------------------------------------------
@pytest.mark.parametrize(("ext", "method", "family"), [
    ("pdf", None, "pdf"), ("pdf", "pdftotext", "pdf"), ("pdf", "tesseract", "ocr"),
    ("pdf", "pdfminer", "python"), ("PDF", "", "pdf"), ("png", None, "ocr"),
    ("tiff", None, "ocr"), ("doc", None, "office"), ("rtf", None, "rtf"),
    ("ps", None, "postscript"), ("docx", None, "python"), ("msg", None, "python"),
])
def test_each_format_and_method_maps_to_its_extractor_family(ext, method, family) -> None:
    assert family_for(ext, method) == family


def test_a_method_the_format_does_not_support_is_refused() -> None:
    with pytest.raises(InvalidMethod, match="pdftotext, pdfminer, tesseract"):
        family_for("pdf", "ocrmypdf")
    with pytest.raises(InvalidMethod, match="leave method out"):
        family_for("docx", "tesseract")


def test_the_family_of_an_unsupported_extension_is_refused() -> None:
    with pytest.raises(UnsupportedFormat):
        family_for("mp3")


def test_supported_formats_lists_every_format_as_json_with_its_default_method() -> None:
    table = supported_formats()
    json.dumps(table)
    assert [row["ext"] for row in table] == sorted(FORMATS)
    by_ext = {row["ext"]: row for row in table}
    assert by_ext["pdf"]["default_method"] == "pdftotext"
    assert by_ext["pdf"]["methods"] == ["pdftotext", "pdfminer", "tesseract"]
    assert by_ext["docx"] == {"ext": "docx", "family": "python", "methods": [],
                              "mime": FORMATS["docx"].mime, "default_method": None}
    assert all(row["mime"].count("/") == 1 for row in table)


def test_an_extension_textract_has_no_parser_for_is_unsupported_by_the_extraction(
        tmp_path: Path) -> None:
    path = tmp_path / "notes.xyz"
    path.write_bytes(b"plain words")
    with pytest.raises(UnsupportedFormat, match=r"no extractor for \.xyz"):
        extract(path, "xyz")


def test_a_method_the_formats_parser_does_not_know_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(minimal_pdf(1))
    with pytest.raises(UnsupportedFormat, match=r"method 'bogus' is not available for \.pdf"):
        extract(path, "pdf", "bogus")
