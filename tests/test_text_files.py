"""A .txt file's text: textract's, byte for byte, read without textract's chardet pass
where the bytes are plain ASCII, and binary bytes a clear error instead of a TypeError.
The other formats a job reads from its payload (CSV, TSV, PSV, JSON) give textract's text
of the same bytes as a file, and fail where textract fails. Every parser's output is
decoded as textract's own decoding does it (textract_decoded), and a mail parsed in
this process reads as textract reads it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import textract
from textract.parsers.utils import BaseParser

from daemon.documents.extract import PAYLOAD_EXTS, extract, payload_text, textract_decoded
from daemon.errors import CorruptDocument
from devtools.corpus import corpus_documents

PRINTABLE = bytes(range(32, 127)) + b"\n\t\r\f"
NAMED = {
    "empty": b"",
    "ascii": b"The quick brown fox jumps over the lazy dog.\n",
    "ascii_with_plus": b"C++ and 1+1",  # "+" could start UTF-7
    "ascii_with_markup": b'<?xml version="1.0" encoding="iso-8859-1"?><a>hi</a>',
    "hz": b"~{<:Ky2;S{#,NpJ)l6HK!#~}",
    "iso_2022_jp": "日本語のテキスト".encode("iso-2022-jp"),
    "utf8": "café naïve résumé".encode(),
    "latin1": "café naïve résumé".encode("latin-1"),
    "shift_jis": "日本語のテキスト、かなり長い文章です。".encode("shift_jis"),
    "utf16_bom": "hello".encode("utf-16"),
}


def generated(seed: int, count: int) -> list[bytes]:
    """Printable ASCII, all of ASCII, and all bytes, of random lengths."""
    rnd = random.Random(seed)
    alphabets = [PRINTABLE, bytes(range(1, 128)), bytes(range(256))]
    return [bytes(rnd.choice(alphabet) for _ in range(rnd.randint(1, 300)))
            for alphabet in alphabets for _ in range(count)]


def textract_text(path: Path) -> str | None:
    """textract's text of `path` as a .txt; None where textract fails (binary bytes)."""
    try:
        return textract.process(str(path), extension="txt").decode("utf-8")
    except TypeError:  # chardet found no encoding: decode(None)
        return None


@pytest.mark.parametrize("data", [*NAMED.values(), *generated(seed=18, count=150)],
                         ids=[*NAMED, *(f"generated-{n}" for n in range(450))])
def test_a_txt_file_reads_as_textract_reads_it_or_fails_as_binary(tmp_path: Path,
                                                                 data: bytes) -> None:
    path = tmp_path / "doc.txt"
    path.write_bytes(data)
    expected = textract_text(path)
    if expected is None:
        with pytest.raises(CorruptDocument, match="binary data, not text"):
            extract(path, "txt")
    else:
        assert extract(path, "txt").text == expected


# What the delimiter parsers and the JSON parser meet: quoted fields across CRLF, other
# encodings, escapes that make lone surrogates (textract drops them on its way to UTF-8).
PAYLOAD_SAMPLES = {
    "csv": [b'a,b\r\n"x\r\ny",z\r\n', "é,ü\n".encode("latin-1"), b"one", b"",
            b'"unterminated,quote\n'],
    "tsv": [b"a\tb\n1\t2\n", "日本\t語\n".encode("shift_jis")],
    "psv": [b"a|b\n1|2\n", b"a|\"b|c\"\n"],
    "json": [b'{"b": ["x", 1, {"c": "y"}], "a": "z"}', b'"\\ud800 lone"', b"[1, 2",
             '{"k": "caf\u00e9"}'.encode("utf-16"), b"null"],
}
CORPUS_PAYLOAD_DOCS = [d for d in corpus_documents() if d.format in PAYLOAD_EXTS]


def textract_result(path: Path, ext: str) -> str | type[Exception]:
    """textract's text of the file, or the kind of exception it fails with."""
    try:
        return textract.process(str(path), extension=ext).decode("utf-8")
    except Exception as exc:  # any failure: the payload path must fail too
        return type(exc)


@pytest.mark.parametrize(("ext", "data"), [(ext, data) for ext, samples in
                                           PAYLOAD_SAMPLES.items() for data in samples])
def test_a_payload_format_reads_as_textract_reads_its_file_or_fails_as_corrupt(
        tmp_path: Path, ext: str, data: bytes) -> None:
    path = tmp_path / f"doc.{ext}"
    path.write_bytes(data)
    expected = textract_result(path, ext)
    if isinstance(expected, str):
        assert payload_text(data, ext) == expected
    else:
        with pytest.raises(CorruptDocument):
            payload_text(data, ext)


def test_the_corpus_has_documents_of_every_payload_format() -> None:
    assert {d.format for d in CORPUS_PAYLOAD_DOCS} == PAYLOAD_EXTS


@pytest.mark.parametrize("doc", CORPUS_PAYLOAD_DOCS, ids=lambda d: d.id)
def test_every_corpus_document_of_a_payload_format_reads_as_textract_reads_it(doc) -> None:
    expected = textract.process(str(doc.path), extension=doc.format).decode("utf-8")
    assert payload_text(doc.path.read_bytes(), doc.format) == expected


SAMPLES = [*NAMED.values(), *generated(seed=19, count=60)]
SAMPLE_IDS = [*NAMED, *(f"generated-{n}" for n in range(180))]


def outcome(decode, data: bytes) -> str | type[Exception]:
    try:
        return decode(data)
    except Exception as exc:  # binary bytes: decode(None) raises, in both
        return type(exc)


@pytest.mark.parametrize("data", SAMPLES, ids=SAMPLE_IDS)
def test_a_parsers_output_decodes_as_textracts_own_decoding_decodes_it(data: bytes) -> None:
    assert outcome(textract_decoded, data) == outcome(BaseParser().decode, data)


@pytest.mark.parametrize("body", SAMPLES, ids=SAMPLE_IDS)
def test_a_mail_reads_as_textract_reads_it_or_fails_where_it_fails(tmp_path: Path,
                                                                   body: bytes) -> None:
    path = tmp_path / "mail.eml"
    path.write_bytes(b"Subject: s\r\nContent-Type: text/plain\r\n\r\n" + body)
    expected = textract_result(path, "eml")
    if isinstance(expected, str):
        assert extract(path, "eml").text == expected
        assert extract(tmp_path / "gone.eml", "eml", data=path.read_bytes()).text == expected
    else:
        with pytest.raises(CorruptDocument):
            extract(path, "eml")
