"""A .docx's text read by daemon/documents/word.py is the text textract (docx2txt) gives.

Every docx of the corpus, and packages written here part by part where docx2txt has
habits of its own: headers and footers in the archive's order, its loose name pattern,
tabs, breaks, empty runs, entities, surrounding whitespace. What cannot be read goes to
textract and fails as it fails there.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import textract

from daemon.documents import word
from daemon.documents.extract import extract
from tests.conftest import corpus_documents, fails_as_textract_fails

W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def _part(body: str, root: str = "w:document") -> str:
    return f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><{root} {W}>{body}</{root}>'


def _docx(path: Path, members: list[tuple[str, str | bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def _textract(path: Path) -> str:
    return textract.process(str(path)).decode("utf-8")


@pytest.mark.parametrize("doc", [d for d in corpus_documents() if d.format == "docx"
                                 and d.path.suffix == ".docx"], ids=lambda d: d.id)
def test_every_docx_of_the_corpus_reads_as_textract_reads_it(doc, tmp_path: Path) -> None:
    assert word.docx_text(doc.path) is not None
    assert extract(doc.path, "docx").text == _textract(doc.path)


def test_headers_body_and_footers_come_in_docx2txts_order_with_its_tabs_and_breaks(
        tmp_path: Path) -> None:
    body = _part(
        "<w:body><w:p><w:r><w:t>  First</w:t><w:tab/><w:t>tabbed</w:t></w:r></w:p>"
        "<w:p><w:r><w:t>line</w:t><w:br/><w:t>break</w:t><w:cr/><w:t/></w:r></w:p>"
        "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>in a cell &amp; &#233;t&#233;</w:t></w:r></w:p>"
        "</w:tc></w:tr></w:tbl>"
        '<w:p><w:r><w:t xml:space="preserve">   </w:t></w:r></w:p></w:body>')
    path = _docx(tmp_path / "parts.docx", [
        ("[Content_Types].xml", "<Types/>"),
        ("word/footer2.xml", _part("<w:p><w:r><w:t>footer two</w:t></w:r></w:p>", "w:ftr")),
        ("word/header2.xml", _part("<w:p><w:r><w:t>header two</w:t></w:r></w:p>", "w:hdr")),
        ("word/document.xml", body),
        ("word/header1.xml", _part("<w:p><w:r><w:t>header one</w:t></w:r></w:p>", "w:hdr")),
        # docx2txt's pattern matches any name that starts like a header's
        ("word/header1.xml.orig", _part("<w:p><w:r><w:t>a stray copy</w:t></w:r></w:p>",
                                        "w:hdr")),
        ("word/footer1.xml", _part("<w:p><w:r><w:t>footer one\n</w:t></w:r></w:p>", "w:ftr")),
    ])
    expected = _textract(path)

    assert word.docx_text(path) == expected
    assert extract(path, "docx").text == expected
    assert expected.startswith("header two\n\nheader one\n\na stray copy")
    assert "First\ttabbed" in expected and "line\nbreak\n" in expected
    assert "in a cell & été" in expected and expected.endswith("footer one")


@pytest.mark.parametrize("members", [
    [("word/other.xml", _part(""))],  # no word/document.xml
    [("word/document.xml", "<w:document><w:body>")],  # not well-formed
    [("word/document.xml", _part("")), ("word/header1.xml", b"\x00\x01 not xml")],
], ids=["no_body", "malformed_body", "malformed_header"])
def test_a_docx_that_cannot_be_read_goes_to_textract_and_fails_as_it_fails(
        tmp_path: Path, members: list) -> None:
    path = _docx(tmp_path / "broken.docx", members)

    assert word.docx_text(path) is None
    fails_as_textract_fails(path, "docx")
