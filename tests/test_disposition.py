"""A part's Content-Disposition parses to what aiohttp's own parser gives, for every header:
the simple ones through the fast path, the rest through aiohttp, and the api's multipart
reader uses the fast one once installed."""

from __future__ import annotations

import random
import warnings

import pytest
from aiohttp import multipart

from daemon.api import disposition

AIOHTTP_PARSE = multipart.parse_content_disposition
# What clients write, and what makes a header anything but simple.
KEYS = ["name", "filename", "filename*", "NAME", "name*0", "name*1", "size", "Filename"]
VALUE_PIECES = ["file", "a.pdf", "/etc/passwd", "//x", "é", "%41", " ", ";", '"', "\\",
                "\\\"", "'", "UTF-8''a%20b", "", "\t", "..", "t1.txt"]
TYPES = ["form-data", "attachment", "FORM-DATA", "", " form-data", "form data"]
SEPARATORS = [";", "; ", ";  ", " ; ", ";;"]


def random_header(rnd: random.Random) -> str:
    header = rnd.choice(TYPES)
    for _ in range(rnd.randint(0, 4)):
        value = "".join(rnd.choice(VALUE_PIECES) for _ in range(rnd.randint(0, 3)))
        if rnd.random() < 0.8:
            value = f'"{value}"'
        header += f"{rnd.choice(SEPARATORS)}{rnd.choice(KEYS)}={value}"
    return header


def both(header: str | None) -> tuple[object, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # aiohttp warns on the malformed ones
        return disposition.parse_content_disposition(header), AIOHTTP_PARSE(header)


SIMPLE = ['form-data; name="file"; filename="a.pdf"', 'form-data; name="file"',
          'form-data;name="x";filename="/abs/path.txt"', 'form-data; name="file"; filename=""',
          'form-data; name="a"; name="b"', "form-data", None, ""]


@pytest.mark.parametrize("header", SIMPLE)
def test_the_headers_clients_send_parse_as_aiohttp_parses_them(header: str | None) -> None:
    ours, theirs = both(header)
    assert ours == theirs


def test_ten_thousand_random_headers_parse_as_aiohttp_parses_them() -> None:
    rnd = random.Random(2026)
    headers = [random_header(rnd) for _ in range(10_000)]
    differing = [(h, *answers) for h in headers if (answers := both(h))[0] != answers[1]]
    assert differing == []
    # and the sample reaches the fast path often enough to mean something
    assert sum(1 for h in headers if disposition._SIMPLE.fullmatch(h)) > 300


def test_installing_makes_aiohttps_multipart_reader_use_the_fast_parser() -> None:
    try:
        disposition.install()
        assert multipart.parse_content_disposition is disposition.parse_content_disposition
    finally:
        multipart.parse_content_disposition = AIOHTTP_PARSE
