"""What a PDF's drawing instructions will make a reader hold, read before it runs them.

A PDF reader keeps state for two kinds of operator until they are undone: each `q`
saves the graphics state until its `Q` (poppler: about 940 bytes each), and each path
segment (`m l c v y re h`) is kept until a painting operator (`S f B b n` ...) ends the
path (about 190 bytes each). Flate compresses a repeated operator a thousandfold per
layer, and filters chain: a 570-byte PDF of five million `q` took pdftotext 4.7 GB and
13 s, 620 bytes of path segments 744 MB. This module walks the raw streams of the file,
inflates those that can hold drawing instructions under a ratio and size budget, and
measures the deepest `q` nesting and the longest unpainted path.

Streams behind filters other than Flate (LZW, ASCII85...) are not inflated, and the
streams of an encrypted PDF do not inflate without its key: both are left to the job's
deadline and memory limit. (Looking for /Encrypt instead would let any PDF skip the
check by carrying those bytes in a comment.)
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

CHUNK = 1 << 20
RATIO_FLOOR = 1 << 20  # below this much output a stream's ratio is not judged

_STREAM = re.compile(rb"(?<!end)stream\r?\n")
# "N G " before "obj", read backwards from the keyword
_OBJ_NUMBERS_REVERSED = re.compile(rb"\s+\d+\s+\d+")
_WORD_BYTE = re.compile(rb"\w")
# Streams that hold no drawing instructions: images, fonts, metadata, object and xref
# streams, colour profiles, functions, CMaps, embedded files.
_NOT_CONTENT = re.compile(
    rb"/Subtype\s*/(?:Image|Type1C|CIDFontType0C|OpenType|XML)\b|/Length[123]\b"
    rb"|/Type\s*/(?:XRef|ObjStm|Metadata|EmbeddedFile|CMap)\b|/FunctionType\b|/N\s+\d")
_FILTER = re.compile(rb"/Filter\s*(\[[^\]]*\]|/[A-Za-z0-9]+)")
_NAME = re.compile(rb"/([A-Za-z0-9]+)")
# The operators that matter, each a token after whitespace (how writers separate them).
# Literal strings are not parsed: a lone "q" word in a shown text counts, which real text
# never does often enough to matter at the limits.
_OPERATOR = re.compile(rb"(?<=\s)(?:[qQmlcvyhSsFn]|re|[fBb]\*?)(?=[\s\[\]()<>{}/%])")
# Only q and Q, when the nesting alone needs measuring: the same tokens, the whitespace
# before them looked at after the letter, so the regex engine skips at C speed to each q
# or Q instead of trying every byte (10 ms instead of 40 on 3.5 MB of a PDF of maps).
_STATE_OPERATOR = re.compile(rb"[qQ](?<=\s[qQ])(?=[\s\[\]()<>{}/%])")
# Each operator as one symbol: ( for q, ) for Q, | for a painting operator, p for a path
# segment; mapped at C speed (replace, translate) rather than one Python call each.
_STARRED = ((b"f* ", b"| "), (b"B* ", b"| "), (b"b* ", b"| "), (b"re ", b"p "))
_SYMBOLS = bytes.maketrans(b"qQSsfFBbnmlcvyh", b"()|||||||pppppp")
_REDUCTIONS = 32  # passes that drop innermost q..Q pairs at C speed before counting


class ContentTooLarge(Exception):
    """A stream inflates past the budget or the ratio; `setting` names the bound."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass
class Content:
    deepest_state: int = 0  # the most `q` open at once
    longest_path: int = 0  # the most path segments before a painting operator
    inflated: int = 0  # bytes of drawing instructions read
    paths: bool = True  # measure the paths too (False: the nesting only; longest_path 0)
    _state: int = 0
    _path: int = 0
    _tail: bytes = b""  # the end of a chunk, which may hold half an operator

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk
        # Keep the last partial token for the next chunk (tokens are short).
        cut = max(data.rfind(b" "), data.rfind(b"\n"), data.rfind(b"\r"))
        if cut == -1:
            cut = max(0, len(data) - 16)
        data, self._tail = data[:cut + 1], data[cut + 1:]
        self._read(data)

    def finish(self) -> None:
        self._read(self._tail)
        self._tail = b""

    def _read(self, data: bytes) -> None:
        # A space first: the chunk's first token follows the whitespace `feed` cut at.
        operators = _OPERATOR if self.paths else _STATE_OPERATOR
        symbols = b" ".join(operators.findall(b" " + data)) + b" "
        for starred, symbol in _STARRED:
            symbols = symbols.replace(starred, symbol)
        symbols = symbols.translate(_SYMBOLS, b" ")
        if self.paths:
            self._read_paths(symbols)
        # The deepest nesting: drop innermost pairs (each pass lowers the peak by at most
        # one, which is added back), then count what is left.
        states = symbols.translate(None, b"p|")
        passes = 0
        while passes < _REDUCTIONS and b"()" in states:
            states = states.replace(b"()", b"")
            passes += 1
        depth = peak = self._state
        for state in states:  # bytes iterate as ints: 40 is "(", a saved state
            depth = depth + 1 if state == 40 else max(depth - 1, 0)  # an extra Q is ignored
            peak = max(peak, depth)
        self._state = depth
        self.deepest_state = max(self.deepest_state, peak + passes)

    def _read_paths(self, symbols: bytes) -> None:
        # The longest path: runs of segments between painting operators.
        runs = symbols.translate(None, b"()").split(b"|")
        if len(runs) == 1:
            self._path += len(runs[0])
        else:
            self._path += len(runs[0])
            self.longest_path = max(self.longest_path, self._path, *map(len, runs[1:-1]))
            self._path = len(runs[-1])
        self.longest_path = max(self.longest_path, self._path)


def measure(data: bytes, budget: int, max_ratio: int, paths: bool = True) -> Content:
    """The drawing instructions of the PDF `data`, measured (`paths=False`: their nesting
    only, for a PDF whose bound on path segments is within its limit already)."""
    content = Content(paths=paths)
    for chunk in _content_chunks(data, budget, max_ratio, content):
        if chunk:
            content.feed(chunk)
        else:
            content.finish()
    return content


@dataclass
class Bounds:
    """What the drawing instructions could hold at most, from a count at C speed: no
    more `q` open at once than `q` bytes in them, no more path segments than half their
    bytes (an operator is a letter and a separator)."""

    most_states: int = 0
    most_path_segments: int = 0


def bounds(data: bytes, budget: int, max_ratio: int) -> Bounds:
    """Bounds of the PDF `data`'s drawing instructions, under the same inflation budget
    and ratio as measure(). Where they are within the limits, measure()'s pass over every
    operator (most of a PDF's guard time) has nothing to find."""
    content, found = Content(), Bounds()
    for chunk in _content_chunks(data, budget, max_ratio, content):
        found.most_states += chunk.count(b"q")
    found.most_path_segments = content.inflated // 2
    return found


def _content_chunks(data: bytes, budget: int, max_ratio: int,
                    content: Content) -> Iterator[bytes]:
    """The inflated drawing instructions, chunk by chunk, an empty chunk after each
    stream; `content.inflated` counts them against the budget."""
    for head, raw in _streams(data):
        if _NOT_CONTENT.search(head):
            continue
        filters = _filters(head)
        if filters is None:
            continue
        for chunk in _inflated(raw, filters, content.inflated, budget, max_ratio):
            content.inflated += len(chunk)
            yield chunk
        yield b""


def _streams(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(dictionary, raw bytes) of every stream in the file, found by its keywords."""
    at = 0
    while (found := _STREAM.search(data, at)) is not None:
        start = found.end()
        end = data.find(b"endstream", start)
        if end == -1:
            end = len(data)
        before = data[max(0, found.start() - 4096):found.start()]
        yield _after_last_object_header(before), data[start:end]
        at = end


def _after_last_object_header(before: bytes) -> bytes:
    """`before` from the end of its last `N G obj` on (all of it when there is none).

    Read backwards from each "obj", rightmost first: a regex scan of the 4 KB before
    every stream was most of a PDF's guard time."""
    at = len(before)
    while at > 0 and (at := before.rfind(b"obj", 0, at)) > 0:
        follows = before[at + 3:at + 4]
        if follows and _WORD_BYTE.match(follows):
            continue  # "objx": not the keyword
        if _OBJ_NUMBERS_REVERSED.match(before[at - 1::-1]):
            return before[at + 3:]
    return before


def _filters(head: bytes) -> list[bytes] | None:
    """The stream's filters if all are Flate (or none); None for any other."""
    found = _FILTER.search(head)
    names = _NAME.findall(found.group(1)) if found else []
    return names if all(n in (b"FlateDecode", b"Fl") for n in names) else None


def _inflated(raw: bytes, filters: list[bytes], already: int, budget: int,
              max_ratio: int) -> Iterator[bytes]:
    """The decoded stream in chunks, each filter inflating at most what is asked of it;
    `already` bytes of the budget went to earlier streams."""
    chunks: Iterator[bytes] = iter([raw])
    for _ in filters:
        chunks = _inflate(chunks)
    produced = 0
    for chunk in chunks:
        produced += len(chunk)
        if already + produced > budget:
            raise ContentTooLarge(f"the PDF's drawing instructions inflate to more than "
                                  f"{budget} bytes", "MAX_PDF_CONTENT_BYTES")
        if produced > RATIO_FLOOR and produced > max_ratio * max(len(raw), 1):
            raise ContentTooLarge(f"a PDF stream of {len(raw)} bytes inflates more than "
                                  f"{max_ratio} times", "MAX_COMPRESSION_RATIO")
        yield chunk


def _inflate(chunks: Iterator[bytes]) -> Iterator[bytes]:
    inflater = zlib.decompressobj()
    try:
        for chunk in chunks:
            data = chunk
            while data and not inflater.eof:  # at the end, the tail is what follows it
                out = inflater.decompress(data, CHUNK)
                if out:
                    yield out
                data = inflater.unconsumed_tail
            if inflater.eof:
                return
        out = inflater.flush()
        if out:
            yield out
    except zlib.error:
        return  # a damaged stream: the reader will complain about it, not us
