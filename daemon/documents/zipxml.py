"""Small XML parts read out of ZIP containers (OOXML, ODF, EPUB) without trusting them.

Used after extraction, for metadata and slide boundaries: the worker's guards have already
checked the container (entry count, declared sizes, compression ratio), and these reads are
bounded again here so that a part the text extractors never looked at cannot cost more.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from xml.parsers import expat

from lxml import etree

# A metadata part (core.xml, meta.xml, an OPF package, a slide) is a few KB; 4 MB leaves
# room for a slide full of text while keeping one read cheap.
MAX_PART_BYTES = 4 * 1024 * 1024

# The options python-pptx parses slides with (so that slide text read here is the text
# textract saw), plus no network and no DTD loading. resolve_entities=False: an entity
# declared in an internal subset is never expanded, so a "billion laughs" part stays small.
_PARSER = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True,
                          load_dtd=False, huge_tree=False)


class PartRefused(ValueError):
    """Raised when a part is too large, declares a DTD or is not well-formed XML.

    The message names the part, never its content: it goes to logs.
    """


@contextlib.contextmanager
def opened(path: Path, container: zipfile.ZipFile | None = None) -> Iterator[zipfile.ZipFile]:
    """`container` when the guards opened it already (guards.Checked), left open for the
    next reader; else the file at `path`, closed after."""
    if container is not None:
        yield container
        return
    with zipfile.ZipFile(path) as zf:
        yield zf


def _shown(name: str) -> str:
    # An EPUB names its own package part: a document-controlled string in a log line.
    return repr("".join(c if c.isprintable() else "_" for c in name)[:100])


def read_part(zf: zipfile.ZipFile, name: str) -> etree._Element | None:
    """The root element of part `name`, None if the part does not exist.

    Raises PartRefused for a part over MAX_PART_BYTES, one with a DOCTYPE (no metadata part
    of these formats has one: it is there to declare entities) or malformed XML.
    """
    try:
        info = zf.getinfo(name)
    except KeyError:
        return None
    if info.file_size > MAX_PART_BYTES:
        raise PartRefused(f"part {_shown(name)} declares {info.file_size} bytes")
    with zf.open(info) as f:
        data = f.read(MAX_PART_BYTES + 1)  # inflates at most this much, whatever it claims
    if len(data) > MAX_PART_BYTES:
        raise PartRefused(f"part {_shown(name)} is larger than {MAX_PART_BYTES} bytes")
    _refuse_dtd(data, name)
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise PartRefused(f"part {_shown(name)} is not well-formed XML") from exc
    if root is None:
        raise PartRefused(f"part {_shown(name)} has no root element")
    return root


class _RootReached(Exception):
    pass


def _refuse_dtd(data: bytes, name: str) -> None:
    """PartRefused when the prolog has a DOCTYPE: checked before lxml sees any of it.

    expat reads only the prolog (the first start tag stops it) and calls the doctype
    handler before it reads the internal subset, so no entity is even declared.
    """
    parser = expat.ParserCreate()

    def doctype(*_: object) -> None:
        raise PartRefused(f"part {_shown(name)} declares a DTD")

    def root(*_: object) -> None:
        raise _RootReached

    parser.StartDoctypeDeclHandler = doctype
    parser.StartElementHandler = root
    try:
        parser.Parse(data, True)
    except _RootReached:
        return
    except expat.ExpatError as exc:
        raise PartRefused(f"part {_shown(name)} is not well-formed XML") from exc


def local_name(element: etree._Element) -> str:
    """The tag without its namespace: `{urn:...}title` -> `title`."""
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def text_of(element: etree._Element) -> str:
    """All the text inside `element`, stripped."""
    return "".join(element.itertext()).strip()
