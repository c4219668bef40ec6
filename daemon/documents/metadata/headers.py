"""Metadata in a file's first bytes: mail headers, HTML <head>, RTF {\\info}, PostScript DSC.

Each reads at most HEAD_BYTES of the file, however long the document.
"""

from __future__ import annotations

import email.policy
import re
from email.headerregistry import HeaderRegistry
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path

from daemon.documents import dates
from daemon.documents.metadata.values import Found

HEAD_BYTES = 256 * 1024


class _HeaderClassesBuiltOnce(HeaderRegistry):
    """policy.default's header factory, building each header class once.

    The stock registry creates a new class with type() for every header it is asked for
    (12 us each, a fifth of a mail's metadata read); the class it builds depends only on
    the class registered for the name, so one per registered class serves every read.
    """

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[type, type] = {}

    def __getitem__(self, name: str) -> type:
        registered = self.registry.get(name.lower(), self.default_class)
        if registered not in self._built:
            self._built[registered] = super().__getitem__(name)
        return self._built[registered]


_MAIL_POLICY = email.policy.default.clone(header_factory=_HeaderClassesBuiltOnce())


def read_eml(path: Path, found: Found) -> None:
    """Subject, From, Date, Keywords and Content-Language of a message's header block."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    end = re.search(rb"\r?\n\r?\n", head)
    headers = BytesParser(policy=_MAIL_POLICY).parsebytes(
        head[:end.start()] if end else head, headersonly=True)
    for key, header in (("title", "Subject"), ("author", "From"), ("keywords", "Keywords"),
                        ("language", "Content-Language")):
        try:
            found.text(key, headers.get(header))
        except Exception:  # a header policy.default cannot decode: that key only
            found.dropped[key] = "unreadable header"
    try:
        found.date("created", headers.get("Date"), dates.email_date)
    except Exception:
        found.dropped["created"] = "unreadable header"


class _HeadReader(HTMLParser):
    _META = {"author": "author", "description": "description", "keywords": "keywords",
             "generator": "creator"}

    def __init__(self, found: Found) -> None:
        super().__init__(convert_charrefs=True)
        self.found, self.in_title, self.title = found, False, ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v or "" for k, v in attrs}
        if tag == "html":
            self.found.text("language", a.get("lang") or a.get("xml:lang"))
        elif tag == "title" and not self.title:
            self.in_title = True
        elif tag == "meta":
            key = self._META.get(a.get("name", "").lower())
            if key:
                self.found.text(key, a.get("content"))
            elif a.get("http-equiv", "").lower() == "content-language":
                self.found.text("language", a.get("content"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self.in_title:
            self.in_title = False
            self.found.text("title", " ".join(self.title.split()))

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data


def read_html(path: Path, found: Found) -> None:
    """<title>, <meta name=...> and <html lang>, from the part above <body>."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    body = re.search(rb"<body|</head", head, re.IGNORECASE)  # all the metadata is above
    reader = _HeadReader(found)
    reader.feed(head[:body.start() if body else None].decode("utf-8", "replace"))
    reader.close()


_RTF_INFO = re.compile(rb"\{\\(title|subject|author|keywords|doccomm)[ ]?((?:[^{}\\]|\\.)*)\}")
_RTF_TIME = re.compile(rb"\{\\(creatim|revtim)((?:\\[a-z]+\d+\s?)+)\}")
_RTF_HEX = re.compile(rb"\\'([0-9a-fA-F]{2})")


def read_rtf(path: Path, found: Found) -> None:
    r"""The {\info} group: title, subject, author, keywords, comment, \creatim, \revtim."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    start = head.find(b"{\\info")
    if start == -1:
        return
    info = head[start:start + 64 * 1024]
    keys = {b"title": "title", b"subject": "subject", b"author": "author",
            b"keywords": "keywords", b"doccomm": "description"}
    for name, raw in _RTF_INFO.findall(info):
        value = _RTF_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), raw)
        value = re.sub(rb"\\([{}\\])", rb"\1", value)
        found.text(keys[name], value.decode("cp1252", "replace"))
    for name, raw in _RTF_TIME.findall(info):
        found.date("created" if name == b"creatim" else "modified", raw.decode("ascii"),
                   dates.rtf_date)


_DSC = re.compile(rb"^%%(Title|Creator|For|CreationDate|Pages):[ \t]*(.*?)\r?$", re.M)


def read_ps(path: Path, found: Found) -> None:
    """The DSC header comments (%%Title, %%Creator, %%For, %%CreationDate, %%Pages)."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    end = head.find(b"%%EndComments")
    for name, raw in _DSC.findall(head[:end] if end != -1 else head):
        value = raw.decode("latin-1").strip()
        if value.startswith("(") and value.endswith(")"):
            value = value[1:-1]  # DSC text may be a PostScript string
        if name == b"Pages":
            if value != "atend":  # "(atend)": the count is in the trailer, not read here
                found.count("pages", value)
        elif name == b"CreationDate":
            found.date("created", value, dates.pdf_date)  # ps2pdf/Ghostscript write PDF dates
        else:
            found.text({b"Title": "title", b"Creator": "creator", b"For": "author"}[name], value)
