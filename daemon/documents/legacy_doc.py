"""Legacy Word (.doc) text in milliseconds, exactly as textract's LibreOffice path gives it.

textract 2.x converts every .doc with a fresh `soffice` (about 1.4 s here). For a plain
prose document the text is simply the main story of the Word 97+ binary: the pieces of
the piece table, paragraph marks turned into newlines, fields shown by their results.
That is what this module reads (a hundred lines of the [MS-DOC] layout), and it puts it
in LibreOffice's text-export form, so the output equals textract's byte for byte.

It answers only when it can vouch for the text; otherwise `extract` returns None and
the caller runs textract as before. It vouches when:
- the file is an unencrypted Word 97-2003 document (not Word 6/95, not encrypted);
- the main story holds only prose: no table, footnote, endnote, text box, picture or
  drawing, and antiword sees no list either (LibreOffice writes bullets and numbers
  that are not in the text stream);
- antiword, an independent reader, finds the same text, whitespace aside. Its DocBook
  output is used because it also shows the structure (lists, tables, footnotes).
Two readers agreeing on a prose-only document is the quality bar; anything else, and any
error at all, goes the slow, proven way.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import olefile

ANTIWORD = shutil.which("antiword") or "/usr/bin/antiword"
ANTIWORD_TIMEOUT = 10.0  # seconds; antiword takes milliseconds, a hang means fall back

_WORD_IDENT = 0xA5EC
_NFIB_WORD97 = 0xC1  # Word 97 and later share the FIB layout read here
_F_ENCRYPTED = 0x0100
_F_WHICH_TABLE = 0x0200
_F_OBFUSCATED = 0x8000
_FC_CLX = 33  # index of fcClx/lcbClx in FibRgFcLcb97
_COMPRESSED = 0x40000000

# Control characters of the main story (MS-DOC 2.8.x) as LibreOffice's text export
# writes them. Paragraph, line, page/section and column breaks all end a line; the
# annotation mark is dropped; the two hyphens keep their Unicode forms.
_CONTROL = {"\r": "\n", "\x0b": "\n", "\x0c": "\n", "\x0e": "\n", "\x05": "",
            "\x1e": "\u2011", "\x1f": "\xad"}
# Anything else below 0x20 (cell marks 0x07, pictures 0x01, drawings 0x08, footnote
# references 0x02, ...) means structure this path does not render: fall back.
_ALLOWED_CONTROL = frozenset(_CONTROL) | {"\t"}
# DocBook elements antiword writes for prose. A table, list, footnote or anything new
# sends the document the slow way.
_PROSE_TAGS = frozenset({"book", "bookinfo", "chapter", "sect1", "sect2", "sect3", "sect4",
                         "sect5", "title", "para", "emphasis", "superscript", "subscript",
                         "beginpage"})


class NotPlainProse(Exception):
    """Raised inside this module when the fast path cannot vouch for a document."""


@dataclass(frozen=True)
class Attempt:
    text: str | None  # None: use textract
    reason: str  # "fast", or why not


def extract(path: Path) -> str | None:
    """The document's text as textract would give it, or None: run textract instead."""
    return attempt(path).text


def attempt(path: Path) -> Attempt:
    """`extract` with the reason it declined, for logs and the benchmark."""
    try:
        ours = main_story(path)
        theirs = antiword_text(path)
    except NotPlainProse as exc:
        return Attempt(None, str(exc))
    except Exception as exc:  # a corrupt file is textract's to report, with its error
        return Attempt(None, f"unreadable: {type(exc).__name__}")
    if _squash(_as_antiword_writes(ours)) != _squash(theirs):
        return Attempt(None, "antiword disagrees")
    return Attempt(ours, "fast")


# --- our reader: the main story from the piece table -----------------------------------
def main_story(path: Path) -> str:
    """The main document text, fields by their results, in LibreOffice's line form."""
    with olefile.OleFileIO(str(path)) as ole:
        word = ole.openstream("WordDocument").read()
        ident, nfib = struct.unpack_from("<HH", word, 0)
        flags = struct.unpack_from("<H", word, 0x0A)[0]
        if ident != _WORD_IDENT or nfib < _NFIB_WORD97:
            raise NotPlainProse("not a Word 97-2003 document")
        if flags & (_F_ENCRYPTED | _F_OBFUSCATED):
            raise NotPlainProse("encrypted")
        table_name = "1Table" if flags & _F_WHICH_TABLE else "0Table"
        if not ole.exists(table_name):
            raise NotPlainProse("no table stream")
        table = ole.openstream(table_name).read()
    counts, fc_clx, lcb_clx = _fib(word)
    ccp_text, others = counts[0], counts[1:]
    if any(others):
        raise NotPlainProse("footnotes, headers' text boxes, comments or text boxes")
    raw = _pieces(word, table[fc_clx:fc_clx + lcb_clx], ccp_text)
    return _render(raw)


def _fib(word: bytes) -> tuple[tuple[int, ...], int, int]:
    pos = 32
    csw = struct.unpack_from("<H", word, pos)[0]
    pos += 2 + 2 * csw
    cslw = struct.unpack_from("<H", word, pos)[0]
    if cslw < 11:
        raise NotPlainProse("short FIB")
    longs = struct.unpack_from(f"<{cslw}i", word, pos + 2)
    pos += 2 + 4 * cslw
    cb = struct.unpack_from("<H", word, pos)[0]
    if cb <= _FC_CLX:
        raise NotPlainProse("short FIB")
    fc_clx, lcb_clx = struct.unpack_from("<II", word, pos + 2 + 8 * _FC_CLX)
    # ccpText, ccpFtn, ccpHdd, ccpMcr, ccpAtn, ccpEdn, ccpTxbx, ccpHdrTxbx. Headers
    # (ccpHdd) are not in LibreOffice's export either, so they do not disqualify.
    ccp_text, ftn, _hdd, _mcr, atn, edn, txbx, hdr_txbx = longs[3:11]
    return (ccp_text, ftn, atn, edn, txbx, hdr_txbx), fc_clx, lcb_clx


def _pieces(word: bytes, clx: bytes, ccp_text: int) -> str:
    i = 0
    while i < len(clx) and clx[i] == 0x01:  # Prc: formatting, skipped
        i += 3 + struct.unpack_from("<h", clx, i + 1)[0]
    if i >= len(clx) or clx[i] != 0x02:
        raise NotPlainProse("no piece table")
    lcb = struct.unpack_from("<I", clx, i + 1)[0]
    plc = clx[i + 5:i + 5 + lcb]
    n = (lcb - 4) // 12
    if n <= 0 or len(plc) < lcb:
        raise NotPlainProse("bad piece table")
    cps = struct.unpack_from(f"<{n + 1}I", plc, 0)
    parts: list[str] = []
    for k in range(n):
        start, end = cps[k], min(cps[k + 1], ccp_text)
        if start >= ccp_text:
            break
        fc = struct.unpack_from("<I", plc, 4 * (n + 1) + 8 * k + 2)[0]
        if fc & _COMPRESSED:
            offset = (fc & ~_COMPRESSED) // 2
            chunk = word[offset:offset + end - start]
            parts.append(chunk.decode("cp1252", "replace"))
        else:
            chunk = word[fc:fc + 2 * (end - start)]
            parts.append(chunk.decode("utf-16-le", "replace"))
        if len(chunk) != (end - start) * (1 if fc & _COMPRESSED else 2):
            raise NotPlainProse("piece outside the stream")
    return "".join(parts)


def _render(raw: str) -> str:
    out: list[str] = []
    # Field: 0x13 instructions [0x14 result] 0x15, nested. Only results are text.
    stack: list[bool] = []  # per open field: are we in its result part?
    for ch in raw:
        if ch == "\x13":
            stack.append(False)
        elif ch == "\x14":
            if stack:
                stack[-1] = True
        elif ch == "\x15":
            if stack:
                stack.pop()
        elif stack and not all(stack):
            continue  # inside some field's instructions
        elif ch < " " and ch not in _ALLOWED_CONTROL:
            raise NotPlainProse(f"structure mark {ord(ch):#04x} in the text")
        else:
            out.append(_CONTROL.get(ch, ch))
    if stack:
        raise NotPlainProse("unbalanced fields")
    text = "".join(out)
    if "\ufffd" in text:
        raise NotPlainProse("undecodable characters")
    return text


# --- the second opinion ---------------------------------------------------------------
def antiword_text(path: Path) -> str:
    """antiword's text of the body; raises NotPlainProse on non-prose or failure."""
    try:
        result = subprocess.run(
            [ANTIWORD, "-m", "UTF-8.txt", "-x", "db", str(path)], capture_output=True,
            timeout=ANTIWORD_TIMEOUT, env={**os.environ, "LC_ALL": "C.UTF-8"},
            stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NotPlainProse(f"antiword: {type(exc).__name__}") from exc
    if result.returncode != 0 or not result.stdout:
        raise NotPlainProse(f"antiword exit {result.returncode}")
    try:
        root = ET.fromstring(result.stdout)
    except ET.ParseError as exc:
        raise NotPlainProse("antiword's XML does not parse") from exc
    parts: list[str] = []
    for chapter in root:
        if chapter.tag in ("bookinfo", "title"):
            continue  # document properties, not body text
        for element in chapter.iter():
            if element.tag not in _PROSE_TAGS:
                raise NotPlainProse(f"has <{element.tag}>")
        parts.append("".join(chapter.itertext()))
    return "".join(parts)


def _as_antiword_writes(text: str) -> str:
    # antiword drops soft hyphens and writes the non-breaking one as a plain hyphen.
    return text.replace("\xad", "").replace("\u2011", "-")


def _squash(text: str) -> str:
    return "".join(text.split())
