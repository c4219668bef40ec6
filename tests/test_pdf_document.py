"""A PDF's catalog read with objects out of object streams taken at their offsets
(daemon/documents/pdf_document.py) is the catalog pdfminer's whole-stream parse reads.

Every PDF of the corpus, several of them written with object streams; PDFs built here
with one, whole and with its header damaged in each way that sends the read back to
pdfminer; and the page bound the guards draw from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pdfminer import pdfdocument

from daemon.config import Settings
from daemon.documents import pdf_document
from daemon.documents.formats import FORMATS
from daemon.documents.guards import CATALOG_READ_BYTES, Limits, check_document
from daemon.documents.pdf_catalog import Catalog, read_catalog
from daemon.errors import DocumentTooComplex
from tests.bombs import object_stream_pdf
from tests.conftest import corpus_documents

PDFS = [d.path for d in corpus_documents() if d.format == "pdf"]


def whole_stream_read(path: Path, monkeypatch: pytest.MonkeyPatch) -> Catalog | str:
    """read_catalog with pdfminer's own PDFDocument in place of the offset reader."""
    with monkeypatch.context() as patch:
        patch.setattr(pdf_document, "OffsetReadDocument", pdfdocument.PDFDocument)
        return _read(path)


def _read(path: Path) -> Catalog | str:
    try:
        return read_catalog(path)
    except Exception as exc:  # the same failure is the same answer
        return f"{type(exc).__name__}: {exc}"


def test_every_corpus_pdf_has_the_catalog_the_whole_stream_parse_reads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    packed = [p for p in PDFS if b"/ObjStm" in p.read_bytes()]
    assert len(packed) >= 4, packed  # the case this reader is for
    parses = whole_stream_parses(monkeypatch)
    for path in PDFS:
        read = _read(path)
        if path in packed:
            assert parses == [], path  # read at the offsets, not parsed whole
        assert read == whole_stream_read(path, monkeypatch), path
        parses.clear()


def whole_stream_parses(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Records each of pdfminer's whole-stream parses (PDFDocument._get_objects)."""
    calls: list[object] = []
    parse = pdfdocument.PDFDocument._get_objects

    def recorded(self: pdfdocument.PDFDocument, stream: object) -> object:
        calls.append(stream)
        return parse(self, stream)

    monkeypatch.setattr(pdfdocument.PDFDocument, "_get_objects", recorded)
    return calls


def test_a_catalog_packed_in_an_object_stream_gives_the_page_count_and_info(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "packed.pdf"
    path.write_bytes(object_stream_pdf(3, title="Packed"))
    parses = whole_stream_parses(monkeypatch)
    catalog = read_catalog(path)
    assert parses == []  # every object came out of the stream at its offset
    assert (catalog.pages, catalog.info["Title"], catalog.info["Producer"]) == (
        3, b"Packed", b"objstm")
    assert catalog == whole_stream_read(path, monkeypatch)


@pytest.mark.parametrize("header", [
    b"two 0 three 34",  # not integers
    b"2 0 3 34",  # fewer pairs than /N
    b"2 0 3 34 4 90 5 9000 6 9100 7 9200 8 9300",  # offsets past the data
    b"9 0 9 34 9 90 9 145 9 200 9 255 9 310",  # numbers that are not the objects'
], ids=["words", "short", "offsets past the end", "wrong numbers"])
def test_a_damaged_stream_header_is_read_as_pdfminer_reads_it(
        header: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "damaged.pdf"
    path.write_bytes(object_stream_pdf(3, header=header.ljust(60) + b"\n"))
    parses = whole_stream_parses(monkeypatch)
    read = _read(path)
    assert parses  # the header was not trusted: pdfminer parsed the stream whole
    assert read == whole_stream_read(path, monkeypatch)


def test_the_guards_bound_the_pages_of_a_pdf_whose_page_tree_is_packed(
        tmp_path: Path) -> None:
    path = tmp_path / "many.pdf"
    path.write_bytes(object_stream_pdf(5))
    limits = Limits.from_settings(Settings())
    assert check_document(path, FORMATS["pdf"], limits).pages == 5
    with pytest.raises(DocumentTooComplex, match="5 pages; the limit is 4"):
        check_document(path, FORMATS["pdf"], Limits(**{**vars(limits), "max_pdf_pages": 4}))


def test_the_guards_read_a_pdf_from_the_bytes_they_are_given(tmp_path: Path) -> None:
    limits = Limits.from_settings(Settings())
    for path in PDFS:
        data = path.read_bytes()
        if len(data) > CATALOG_READ_BYTES:  # pdfinfo's: it reads the file itself
            continue
        expected = check_document(path, FORMATS["pdf"], limits)
        assert check_document(tmp_path / "gone.pdf", FORMATS["pdf"], limits,
                              data=data) == expected, path
