"""A .msg's text read by daemon/documents/outlook.py is the text textract gives.

Every message of the corpus, read from its bytes with no file behind it; messages whose
subject was rewritten here in the compound file (non-ASCII text through textract's
decoding, in both string types); damaged messages, which fail as textract fails. The
compound file the extraction parsed serves the metadata, which reads as from the file.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import olefile
import pytest
import textract

from daemon.documents import outlook
from daemon.documents.extract import extract
from daemon.documents.formats import FORMATS
from daemon.documents.metadata import read_metadata
from tests.conftest import corpus_documents, fails_as_textract_fails

MESSAGES = [d for d in corpus_documents() if d.format == "msg"]
UNICODE = next(d.path for d in MESSAGES if d.id == "textract-tests/msg/raw_text.msg")
EIGHT_BIT = next(d.path for d in MESSAGES if d.id == "textract-tests/msg/standardized_text.msg")


def _textract(path: Path) -> str:
    return textract.process(str(path), extension="msg").decode("utf-8")


def _with_subject(source: Path, target: Path, stream: str, subject: bytes) -> Path:
    """`source` with its subject stream overwritten in place (olefile writes only a
    stream's own length: `subject` is padded with spaces to it)."""
    shutil.copyfile(source, target)
    with olefile.OleFileIO(str(target), write_mode=True) as ole:
        size = ole.get_size(stream)
        assert len(subject) <= size
        pad = " ".encode("utf-16-le" if stream.endswith("001F") else "ascii")
        ole.write_stream(stream, subject + pad * ((size - len(subject)) // len(pad)))
    return target


@pytest.mark.parametrize("doc", MESSAGES, ids=lambda d: d.id)
def test_every_message_of_the_corpus_reads_from_its_bytes_as_textract_reads_the_file(
        doc, tmp_path: Path) -> None:
    gone = tmp_path / "message.msg"  # its name only: the text comes from the bytes
    extraction = extract(gone, "msg", data=doc.path.read_bytes())
    assert extraction.text == _textract(doc.path)
    assert isinstance(extraction.container, olefile.OleFileIO)


@pytest.mark.parametrize("doc", MESSAGES, ids=lambda d: d.id)
def test_the_compound_file_the_extraction_parsed_gives_the_metadata_the_file_gives(
        doc, tmp_path: Path) -> None:
    data = doc.path.read_bytes()
    extraction = extract(tmp_path / "message.msg", "msg", data=data)
    sha256 = hashlib.sha256(data).hexdigest()
    expected = read_metadata(doc.path, FORMATS["msg"], extraction.text, sha256=sha256)
    shared = read_metadata(tmp_path / "gone.msg", FORMATS["msg"], extraction.text,
                           sha256=sha256, container=extraction.container)
    assert shared == expected
    assert expected.error is None and "title" in expected.values


@pytest.mark.parametrize(("source", "stream", "subject"), [
    (UNICODE, "__substg1.0_0037001F", "Zürich — ½ €".encode("utf-16-le")),
    (EIGHT_BIT, "__substg1.0_0037001E", "Caf\xe9 cr\xe8me".encode("cp1252")),
    (EIGHT_BIT, "__substg1.0_0037001E", b"ascii +ADw- ~{ <"),
], ids=["unicode subject", "cp1252 subject", "ascii that chardet could misread"])
def test_a_rewritten_subject_decodes_as_textract_decodes_it(
        source: Path, stream: str, subject: bytes, tmp_path: Path) -> None:
    path = _with_subject(source, tmp_path / "message.msg", stream, subject)
    read = outlook.read(path.read_bytes())
    assert read is not None and subject.decode("utf-16-le" if stream.endswith("001F")
                                               else "cp1252")[:4].encode() in read.raw
    assert extract(path, "msg").text == _textract(path)


def test_a_truncated_message_fails_as_textract_fails(tmp_path: Path) -> None:
    path = tmp_path / "cut.msg"
    path.write_bytes(UNICODE.read_bytes()[:600_000])
    assert outlook.read(path.read_bytes()) is None
    fails_as_textract_fails(path, "msg")


def test_bytes_that_are_no_compound_file_fail_as_textract_fails(tmp_path: Path) -> None:
    path = tmp_path / "words.msg"
    path.write_bytes(b"not an outlook message\n" * 100)
    assert outlook.read(path.read_bytes()) is None
    fails_as_textract_fails(path, "msg")
