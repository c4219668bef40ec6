"""A .txt file's text: textract's, byte for byte, read without textract's chardet pass
where the bytes are plain ASCII, and binary bytes a clear error instead of a TypeError."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import textract

from daemon.documents.extract import extract
from daemon.errors import CorruptDocument

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
