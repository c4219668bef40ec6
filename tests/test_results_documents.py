"""Pages, metadata and detection of real corpus documents (the pure document layer).

The expected values are read here independently of daemon.documents: pdfinfo for PDFs,
the zip part itself for OOXML, python-pptx for slides, the email module for headers.
"""

from __future__ import annotations

import functools
import hashlib
import re
import subprocess
import time
import xml.etree.ElementTree as ET
import zipfile
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path

import pptx
import pytest

from daemon.config import Settings
from daemon.documents import pages
from daemon.documents.detect import detect
from daemon.documents.extract import extract, extract_text
from daemon.documents.formats import FORMATS
from daemon.documents.guards import CATALOG_READ_BYTES, Limits, check_document
from daemon.documents.metadata import headers, read_metadata
from daemon.documents.pdf_catalog import Catalog, CatalogUnreadable
from daemon.documents.zipxml import MAX_PART_BYTES
from daemon.errors import UnsupportedFormat
from tests.bombs import info_loop_pdf, minimal_pdf, with_broken_xref
from tests.conftest import CorpusDoc, corpus_documents, textract_text

DOCS = corpus_documents()
LIMITS = Limits.from_settings(Settings())
PDFS = [d for d in DOCS if d.format == "pdf"]
# The one corpus date that is not a PDF date: ocr_text.pdf's CreationDate "24/9/2004 17:36:38".
KNOWN_DROPPED = {"textract-tests/pdf/ocr_text.pdf": {"created"}}


def by_id(doc_id: str) -> CorpusDoc:
    return next(d for d in DOCS if d.id == doc_id)


@functools.cache
def text_of(doc_id: str, method: str = "") -> str:
    doc = by_id(doc_id)
    return extract_text(doc.path, doc.format, method)


@functools.cache
def pdfinfo(path: Path, *options: str) -> dict[str, str]:
    out = subprocess.run(["pdfinfo", *options, str(path)], capture_output=True, check=True,
                         timeout=30).stdout.decode("utf-8", "replace")
    return {k: v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def utc(iso: str) -> str:
    """pdfinfo -isodates' "2022-04-03T18:05:42+02" as "2022-04-03T16:05:42Z"."""
    iso = re.sub(r"([+-]\d\d)$", r"\1:00", iso.replace("Z", "+00:00"))
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- metadata on every document ---------------------------------------------------------
@pytest.mark.parametrize("doc", DOCS, ids=[d.id for d in DOCS])
def test_every_corpus_document_has_its_type_counts_and_hash(doc: CorpusDoc) -> None:
    text = text_of(doc.id)
    meta = read_metadata(doc.path, FORMATS[doc.format], text)
    assert meta.error is None
    assert meta.values["content_type"] == FORMATS[doc.format].mime
    assert meta.values["chars"] == len(text)
    assert meta.values["words"] == len(text.split())
    assert meta.values["sha256"] == hashlib.sha256(doc.path.read_bytes()).hexdigest()
    assert set(meta.dropped) == KNOWN_DROPPED.get(doc.id, set())
    for key in ("created", "modified"):
        if key in meta.values:
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta.values[key])


def test_a_hash_the_caller_already_has_is_not_computed_again() -> None:
    doc = by_id("textract-tests/txt/raw_text.txt")
    meta = read_metadata(doc.path, FORMATS["txt"], "x", sha256="given")
    assert meta.values["sha256"] == "given"


ZIP_DOCS = [d for d in DOCS if d.format in ("docx", "xlsx", "pptx", "odt", "ods", "epub")]


@pytest.mark.parametrize("doc", ZIP_DOCS, ids=[d.id for d in ZIP_DOCS])
def test_the_container_the_guards_opened_serves_extraction_and_metadata_without_the_file(
        doc: CorpusDoc, tmp_path: Path) -> None:
    data = doc.path.read_bytes()
    checked = check_document(doc.path, FORMATS[doc.format], LIMITS, data=data)
    assert isinstance(checked.container, zipfile.ZipFile)
    # The same document's name with no file behind it: what is read, is read from memory.
    gone = tmp_path / doc.path.name
    sha256 = hashlib.sha256(data).hexdigest()
    expected = read_metadata(doc.path, FORMATS[doc.format], "x", sha256=sha256)
    assert read_metadata(gone, FORMATS[doc.format], "x", sha256=sha256,
                         container=checked.container) == expected
    assert expected.error is None and set(expected.values) > {"content_type", "sha256"}
    if doc.format in ("docx", "pptx"):  # the formats read here rather than by textract
        extraction = extract(gone, doc.format, container=checked.container)
        assert extraction.text == textract_text(doc.id)
        assert extraction.container is checked.container  # handed on to the metadata


# --- PDF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("doc", PDFS, ids=[d.id for d in PDFS])
def test_a_pdf_has_the_pages_pdfinfo_counts_and_they_join_into_its_text(doc: CorpusDoc
                                                                        ) -> None:
    text = text_of(doc.id)
    expected = int(pdfinfo(doc.path)["Pages"])
    meta = read_metadata(doc.path, FORMATS["pdf"], text)
    assert meta.values["pages"] == expected
    ends = pages.page_ends(doc.path, FORMATS["pdf"], "", text, meta.values["pages"])
    assert ends is not None and len(ends) == expected
    assert "".join(pages.page_texts(text, ends)) == text
    assert all(page.endswith("\f") and page.count("\f") == 1
               for page in pages.page_texts(text, ends))


@pytest.mark.parametrize("doc", PDFS, ids=[d.id for d in PDFS])
def test_a_pdfs_title_author_and_dates_are_the_ones_pdfinfo_reads(doc: CorpusDoc) -> None:
    info = pdfinfo(doc.path, "-isodates", "-enc", "UTF-8")
    values = read_metadata(doc.path, FORMATS["pdf"], "").values
    for field, key in (("Title", "title"), ("Author", "author"), ("Producer", "producer")):
        assert values.get(key) == (info.get(field, "").replace("\x00", "").strip() or None)
    for field, key in (("CreationDate", "created"), ("ModDate", "modified")):
        if re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:]+(Z|[+-]\d\d(:?\d\d)?)?", info.get(field, "")):
            assert values[key] == utc(info[field])
        else:
            assert key not in values


def test_a_scanned_pdf_with_empty_text_layers_still_has_all_its_pages() -> None:
    doc = by_id("textract-tests/pdf/ocr_text.pdf")
    text = text_of(doc.id)
    ends = pages.page_ends(doc.path, FORMATS["pdf"], "", text, 3)
    assert pages.page_texts(text, ends) == ["\f", "\f", "\f"]


def test_trailing_blank_pages_count_as_pages(tmp_path: Path) -> None:
    blank = tmp_path / "blank.pdf"
    subprocess.run(["gs", "-q", "-o", str(blank), "-sDEVICE=pdfwrite", "-c", "showpage"],
                   check=True, capture_output=True, timeout=60)
    doc = tmp_path / "with-blanks.pdf"
    subprocess.run(["pdfunite", str(by_id("py-pdf-sample-files/001-trivial/minimal-document.pdf")
                                    .path), str(blank), str(blank), str(doc)],
                   check=True, capture_output=True, timeout=60)
    text = extract_text(doc, "pdf")
    meta = read_metadata(doc, FORMATS["pdf"], text)
    assert meta.values["pages"] == int(pdfinfo(doc)["Pages"]) == 3
    ends = pages.page_ends(doc, FORMATS["pdf"], "", text, meta.values["pages"])
    texts = pages.page_texts(text, ends)
    assert "Lorem ipsum" in texts[0] and texts[1:] == ["\f", "\f"]
    assert pages.pages_json(text, ends)[2] == {"number": 3, "text": "\f"}


def test_the_pdfminer_method_has_pages_too() -> None:
    doc = by_id("py-pdf-sample-files/004-pdflatex-4-pages/pdflatex-4-pages.pdf")
    text = text_of(doc.id, "pdfminer")
    ends = pages.page_ends(doc.path, FORMATS["pdf"], "pdfminer", text, 4)
    assert ends is not None and len(ends) == 4
    assert "".join(pages.page_texts(text, ends)) == text


def test_form_feeds_that_disagree_with_the_page_count_give_no_pages() -> None:
    doc = by_id("py-pdf-sample-files/004-pdflatex-4-pages/pdflatex-4-pages.pdf")
    text = text_of(doc.id)
    assert pages.page_ends(doc.path, FORMATS["pdf"], "", text.replace("\f", "", 1), 4) is None
    # textract's OCR joins pages with nothing between them: no boundary to trust.
    assert pages.page_ends(doc.path, FORMATS["pdf"], "tesseract", text, 4) is None


def test_ocr_of_a_scanned_pdf_gives_textracts_text_with_its_page_boundaries() -> None:
    doc = by_id("textract-tests/pdf/ocr_text.pdf")
    text, ends = pages.ocr_pdf(doc.path)
    assert text == textract_text(doc.id, "tesseract")  # textract's own, shared with test_corpus
    assert ends is not None and len(ends) == int(pdfinfo(doc.path)["Pages"]) == 3
    texts = pages.page_texts(text, ends)
    assert "".join(texts) == text and all(t.strip() for t in texts)


def test_a_malformed_pdf_date_drops_only_that_key(tmp_path: Path) -> None:
    source = by_id("py-pdf-sample-files/001-trivial/minimal-document.pdf").path
    data = source.read_bytes()
    good = b"/CreationDate (D:20220403180542+02'00')"
    assert data.count(good) == 1
    bad = tmp_path / "bad-date.pdf"
    bad.write_bytes(data.replace(good, b"/CreationDate (D:2022XX03180542+02'00')"))
    before = read_metadata(source, FORMATS["pdf"], "").values
    meta = read_metadata(bad, FORMATS["pdf"], "")
    assert meta.dropped == {"created": "not a valid date"}
    assert meta.error is None
    assert "created" not in meta.values
    assert {k: v for k, v in before.items() if k not in ("created", "sha256")} == \
        {k: v for k, v in meta.values.items() if k != "sha256"}


def test_a_pdf_pdfminer_cannot_open_is_read_through_pdfinfo(tmp_path: Path) -> None:
    source = by_id("textract-tests/pdf/two_column.pdf").path
    broken = tmp_path / "broken-xref.pdf"
    broken.write_bytes(with_broken_xref(source.read_bytes()))
    meta = read_metadata(broken, FORMATS["pdf"], "")
    assert meta.error is None
    assert meta.values["pages"] == int(pdfinfo(broken)["Pages"]) == 6
    assert meta.values["title"] == "The role of mentorship in protégé performance"
    assert meta.values["created"] == "2010-05-25T03:08:57Z"


def test_a_pdf_whose_info_refers_to_itself_is_read_without_spinning(tmp_path: Path) -> None:
    from pdfminer import pdftypes

    doc = tmp_path / "loop.pdf"
    doc.write_bytes(info_loop_pdf())
    text = extract_text(doc, "pdf")  # pdftotext reads it: the job has its text
    started = time.monotonic()
    meta = read_metadata(doc, FORMATS["pdf"], text)
    assert time.monotonic() - started < 5
    assert meta.values["pages"] == int(pdfinfo(doc)["Pages"]) == 1
    assert pdftypes.resolve1.__module__ == "pdfminer.pdftypes"  # pdfminer's own again


@pytest.mark.parametrize("doc", PDFS, ids=[d.id for d in PDFS])
def test_the_catalog_the_guards_read_gives_the_metadata_a_fresh_read_gives(doc: CorpusDoc
                                                                           ) -> None:
    checked = check_document(doc.path, FORMATS["pdf"], LIMITS)
    # Above CATALOG_READ_BYTES the guards count with pdfinfo and the reader reads anew.
    assert (isinstance(checked.catalog, Catalog)
            or doc.path.stat().st_size > CATALOG_READ_BYTES)
    given = read_metadata(doc.path, FORMATS["pdf"], "x", checked=checked)
    assert given == read_metadata(doc.path, FORMATS["pdf"], "x")


def test_a_pdf_the_guards_could_not_read_has_its_metadata_from_pdfinfo(tmp_path: Path
                                                                       ) -> None:
    broken = tmp_path / "broken-xref.pdf"
    broken.write_bytes(with_broken_xref(minimal_pdf(6, title="Broken xref")))
    checked = check_document(broken, FORMATS["pdf"], LIMITS)
    assert isinstance(checked.catalog, CatalogUnreadable) and checked.pdfinfo is not None
    given = read_metadata(broken, FORMATS["pdf"], "", checked=checked)
    assert given.error is None
    assert given.values["pages"] == int(pdfinfo(broken)["Pages"]) == 6
    assert given.values["title"] == pdfinfo(broken)["Title"] == "Broken xref"
    assert given == read_metadata(broken, FORMATS["pdf"], "")


# --- PPTX --------------------------------------------------------------------------------
@pytest.mark.parametrize("doc_id", ["textract-tests/pptx/raw_text.pptx",
                                    "textract-tests/pptx/standardized_text.pptx"])
def test_a_presentation_has_one_page_per_slide_holding_that_slides_text(doc_id: str) -> None:
    doc = by_id(doc_id)
    text = text_of(doc_id)
    slides = [[run.text for shape in slide.shapes if shape.has_text_frame
               for para in shape.text_frame.paragraphs for run in para.runs]
              for slide in pptx.Presentation(str(doc.path)).slides]
    meta = read_metadata(doc.path, FORMATS["pptx"], text)
    assert meta.values["pages"] == len(slides)
    ends = pages.page_ends(doc.path, FORMATS["pptx"], "", text, meta.values["pages"])
    texts = pages.page_texts(text, ends)
    assert len(texts) == len(slides) and "".join(texts) == text
    for page, runs in zip(texts, slides, strict=True):
        assert page.removesuffix("\n\n") == "\n\n".join(runs)


def test_slides_that_do_not_give_back_textracts_text_give_no_pages() -> None:
    doc = by_id("textract-tests/pptx/raw_text.pptx")
    assert pages.page_ends(doc.path, FORMATS["pptx"], "", text_of(doc.id) + "x") is None


def test_formats_without_pages_give_none() -> None:
    doc = by_id("textract-tests/docx/raw_text.docx")
    assert pages.page_ends(doc.path, FORMATS["docx"], "", text_of(doc.id)) is None


def test_one_page_is_a_slice_and_a_missing_page_is_none() -> None:
    text = "one\fTwo\fthree"
    ends = pages.form_feed_ends(text)
    assert pages.page_texts(text, ends) == ["one\f", "Two\f", "three"]
    assert pages.page_text(text, ends, 2) == "Two\f"
    assert pages.page_text(text, ends, 0) is None and pages.page_text(text, ends, 4) is None
    assert pages.form_feed_ends("") == [0]


# --- OOXML, mail: values read independently ----------------------------------------------
@pytest.mark.parametrize("doc_id", ["textract-tests/docx/raw_text.docx",
                                    "textract-tests/pptx/raw_text.pptx",
                                    "textract-tests/xlsx/raw_text.xlsx"])
def test_an_office_documents_core_properties_are_read(doc_id: str) -> None:
    doc = by_id(doc_id)
    with zipfile.ZipFile(doc.path) as zf:
        core = ET.fromstring(zf.read("docProps/core.xml"))
    ns = {"dc": "http://purl.org/dc/elements/1.1/", "dcterms": "http://purl.org/dc/terms/"}
    values = read_metadata(doc.path, FORMATS[doc.format], "").values
    assert values["author"] == core.findtext("dc:creator", namespaces=ns)
    assert values.get("title") == (core.findtext("dc:title", namespaces=ns) or None)
    assert values["created"] == core.findtext("dcterms:created", namespaces=ns)
    assert values["modified"] == core.findtext("dcterms:modified", namespaces=ns)


def test_a_mails_subject_sender_and_date_are_read() -> None:
    doc = by_id("textract-tests/eml/raw_text.eml")
    headers = message_from_bytes(doc.path.read_bytes(), policy=policy.default)
    values = read_metadata(doc.path, FORMATS["eml"], "").values
    assert values["title"] == headers["Subject"]
    assert values["author"] == headers["From"]
    assert values["created"] == parsedate_to_datetime(headers["Date"]).astimezone(UTC) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")


MAIL_HEADERS = (
    b"Subject: =?utf-8?q?R=C3=A9union_=C3=A0_Z=C3=BCrich?= and plain\r\n"
    b"From: \"Doe, Jane\" <jane@example.org>, =?iso-8859-1?q?Andr=E9?= <a@example.org>\r\n"
    b"Date: Tue, 01 Dec 2026 10:11:12 +0100\r\n"
    b"Keywords: one, two\r\nContent-Language: fr-CH\r\n"
    b"Subject: a second subject\r\nFrom: broken <<@>\r\n"
    b"X-Unknown: \xe9t\xe9\r\n\r\nbody\r\n")


def test_a_mails_headers_read_as_policy_default_reads_them_with_classes_built_once(
        tmp_path: Path) -> None:
    path = tmp_path / "mail.eml"
    path.write_bytes(MAIL_HEADERS)
    expected = message_from_bytes(MAIL_HEADERS, policy=policy.default)
    assert read_metadata(path, FORMATS["eml"], "").values | {"sha256": None} == {
        "content_type": "message/rfc822", "title": expected["Subject"],
        "author": expected["From"], "keywords": "one, two", "language": "fr-CH",
        "created": "2026-12-01T09:11:12Z", "chars": 0, "words": 0, "sha256": None}
    built = headers._MAIL_POLICY.header_factory
    for name in ("Subject", "From", "Date", "X-Unknown", "subject"):
        assert built[name] is built[name.upper()]  # one class per registered kind
    again = message_from_bytes(MAIL_HEADERS, policy=headers._MAIL_POLICY)
    for name in ("Subject", "From", "Date", "X-Unknown"):
        assert [(str(h), type(h).__mro__[1:]) for h in again.get_all(name)] == [
            (str(h), type(h).__mro__[1:]) for h in expected.get_all(name)]


def test_a_postscript_files_header_comments_are_read() -> None:
    doc = by_id("textract-tests/ps/standardized_text.ps")
    header = doc.path.read_bytes()[:4096].decode("latin-1")
    creator = re.search(r"^%%Creator: (.*)$", header, re.M).group(1).strip()
    pages = int(re.search(r"^%%Pages: (\d+)", header, re.M).group(1))
    values = read_metadata(doc.path, FORMATS["ps"], "").values
    assert values["creator"] == creator and values["pages"] == pages
    assert values["created"] == "2014-08-25T19:37:17Z"  # %%CreationDate: D:20140825193717Z00'00'


# --- hostile and damaged containers -------------------------------------------------------
BOMB_CORE = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<cp:coreProperties
 xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:title>&lol9;</dc:title><dc:creator>&xxe;</dc:creator></cp:coreProperties>"""


def with_part(tmp_path: Path, doc_id: str, part: str, data: bytes) -> Path:
    """A copy of a corpus container with `part` replaced by `data`."""
    source = by_id(doc_id).path
    out = tmp_path / Path(doc_id).name
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, data if info.filename == part else zin.read(info))
    return out


def test_an_entity_bomb_in_core_xml_is_neither_expanded_nor_raised(tmp_path: Path) -> None:
    doc = with_part(tmp_path, "textract-tests/docx/raw_text.docx", "docProps/core.xml",
                    BOMB_CORE)
    started = time.monotonic()
    meta = read_metadata(doc, FORMATS["docx"], "some text")
    assert time.monotonic() - started < 2
    assert meta.error is not None and "DTD" in meta.error
    assert "title" not in meta.values and "author" not in meta.values
    assert "root:" not in repr(meta)
    assert meta.values["content_type"] == FORMATS["docx"].mime
    assert meta.values["chars"] == 9 and meta.values["words"] == 2
    assert meta.values["sha256"] == hashlib.sha256(doc.read_bytes()).hexdigest()


def test_an_oversized_metadata_part_is_not_read(tmp_path: Path) -> None:
    huge = b'<?xml version="1.0"?><x>' + b" " * MAX_PART_BYTES + b"</x>"
    doc = with_part(tmp_path, "textract-tests/odt/raw_text.odt", "meta.xml", huge)
    meta = read_metadata(doc, FORMATS["odt"], "")
    assert meta.error is not None and "bytes" in meta.error
    assert set(meta.values) == {"content_type", "chars", "words", "sha256"}


@pytest.mark.parametrize("doc_id", ["textract-tests/docx/raw_text.docx",
                                    "textract-tests/pptx/raw_text.pptx",
                                    "textract-tests/msg/raw_text.msg",
                                    "textract-tests/xls/raw_text.xls",
                                    "textract-tests/epub/raw_text.epub"])
def test_a_truncated_document_still_gets_the_keys_every_document_has(tmp_path: Path,
                                                                      doc_id: str) -> None:
    doc = by_id(doc_id)
    cut = tmp_path / "cut"
    cut.write_bytes(doc.path.read_bytes()[: doc.path.stat().st_size // 2])
    meta = read_metadata(cut, FORMATS[doc.format], "two words")
    assert meta.error is not None
    assert {"content_type", "chars", "words", "sha256"} <= set(meta.values)
    assert meta.values["words"] == 2


# --- detection ---------------------------------------------------------------------------
@pytest.mark.parametrize("doc", DOCS, ids=[d.id for d in DOCS])
def test_detect_names_each_corpus_documents_format_and_mime_type(doc: CorpusDoc) -> None:
    found = detect(doc.path.name, doc.path.read_bytes(), doc.kwargs.get("extension"))
    fmt = FORMATS[doc.format]
    assert found == {"format": doc.format, "mime_type": fmt.mime, "family": fmt.family}


def test_every_format_has_a_mime_type() -> None:
    assert all(re.fullmatch(r"[a-z]+/[a-z0-9.+-]+", f.mime) for f in FORMATS.values())


def test_detect_refuses_what_the_upload_path_refuses() -> None:
    png = by_id("textract-tests/png/raw_text.png").path.read_bytes()
    with pytest.raises(UnsupportedFormat):
        detect("scan.pdf", png)
