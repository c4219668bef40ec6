"""Every corpus document comes through the running stack exactly as textract gives it."""

from __future__ import annotations

import difflib

import pytest

from tests.client import Client
from tests.conftest import CorpusDoc, corpus_documents, squash, textract_text

DOCS = corpus_documents()
# Scanned: its expected text is OCR output, so it is asked for with ?method=tesseract.
METHODS = {"textract-tests/pdf/ocr_text.pdf": "tesseract"}
# The expected file's layout differs from pdftotext's (column order), upstream too:
# the service must still equal textract's own output.
EXPECTED_DIFFERS_UPSTREAM = {"textract-tests/pdf/two_column.pdf"}


def direct(doc: CorpusDoc, method: str | None) -> str:
    return textract_text(doc.id, method)


def through_service(client: Client, doc: CorpusDoc, method: str | None, *,
                    with_name: bool = True) -> dict:
    query: dict[str, object] = {"wait": 90}
    if method:
        query["method"] = method
    if "extension" in doc.kwargs and with_name:
        query["extension"] = doc.kwargs["extension"]
    reply = client.upload(doc.path.name, doc.path.read_bytes(), **query)
    assert reply.status == 200, reply.body[:500]
    return reply.json()


@pytest.mark.parametrize("doc", DOCS, ids=[d.id for d in DOCS])
def test_the_service_returns_what_textract_returns_for(shared_stack, doc: CorpusDoc) -> None:
    method = METHODS.get(doc.id)
    job = through_service(Client(shared_stack), doc, method)
    assert job["state"] == "done", job["error"]
    assert job["text"] == direct(doc, method)
    expected = doc.expected_text()
    if expected is None or doc.id in EXPECTED_DIFFERS_UPSTREAM:
        return
    if method == "tesseract":
        # OCR output drifts by a few characters between tesseract releases.
        ratio = difflib.SequenceMatcher(None, squash(job["text"]), squash(expected)).ratio()
        assert ratio > 0.97, ratio
    else:
        assert squash(job["text"]) == squash(expected)


NO_EXT = [d for d in DOCS if "extension" in d.kwargs]


@pytest.mark.parametrize("doc", NO_EXT, ids=[d.id for d in NO_EXT])
def test_a_file_without_extension_is_recognised_from_its_content(shared_stack,
                                                                  doc: CorpusDoc) -> None:
    job = through_service(Client(shared_stack), doc, None, with_name=False)
    assert job["state"] == "done", job["error"]
    assert job["format"] == doc.kwargs["extension"]
    assert job["text"] == direct(doc, None)
