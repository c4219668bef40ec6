"""Text as XHTML in Tika's shape: html/head/meta/title/body, a <p> per paragraph, a
<div class="page"> per page where the pages are known.

Well-formed whatever the text holds: characters XML 1.0 cannot carry (controls but tab,
newline and carriage return; the form feed that ends a PDF page) are left out of the
markup, never escaped into it. Not byte-equal to Tika's: its parsers emit their own
structure (headings, tables, lists) that textract's text no longer has.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

from daemon.api.tika.metadata import TikaValue
from daemon.documents.pages import page_texts

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
XHTML_NS = "http://www.w3.org/1999/xhtml"
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")


def xhtml(text: str, metadata: dict[str, TikaValue], page_ends: list[int] | None,
          *, declaration: bool = False) -> str:
    """The document's XHTML; `declaration` adds the XML declaration (text/xml output)."""
    head = [f"<meta name={quoteattr(_clean(key))} content={quoteattr(_clean(v))}/>"
            for key, value in metadata.items()
            for v in (value if isinstance(value, list) else [value])]
    title = metadata.get("dc:title")
    title = title[0] if isinstance(title, list) and title else title or ""
    head.append(f"<title>{escape(_clean(str(title)))}</title>")
    if page_ends and page_ends[-1] == len(text):
        body = "".join(f'<div class="page">{_paragraphs(page)}</div>\n'
                       for page in page_texts(text, page_ends))
    else:
        body = _paragraphs(text)
    return ((XML_DECLARATION if declaration else "")
            + f'<html xmlns="{XHTML_NS}">\n<head>\n' + "\n".join(head)
            + f"\n</head>\n<body>{body}</body></html>")


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{escape(_clean(p.strip()))}</p>\n"
                   for p in _PARAGRAPH_BREAK.split(text) if p.strip())


def _clean(value: str) -> str:
    return _NOT_XML.sub("", value)
