"""A PPTX's slides read straight from their XML: textract's text without python-pptx.

textract's pptx parser loads the package with python-pptx (every part, and every part
reachable through relationships), then walks the slides in presentation order: the
top-level p:sp shapes with a text body, their paragraphs, their runs; and joins every
run's text with a blank line. The load is most of its time (3.5 of 3.6 ms for the
corpus's presentation). `read` does the walk on the slide parts, after checking, from the
relationship parts alone, that python-pptx would load this package and find these
slides: every part it loads has a content type, the main part is a presentation, each
slide is a slide part with a shape tree, each run has its text element (a relationship
to a missing part is dropped, as python-pptx drops it). Anything else (and any part
refused: too large, a DTD, malformed) is None, and textract reads the file as before,
with its own errors.

One difference is deliberate: python-pptx inflates every member, so a damaged image or
other member the text does not come from fails textract; here the text is still read.
"""

from __future__ import annotations

import posixpath
import zipfile
from collections.abc import Callable
from pathlib import Path

from daemon.documents.zipxml import PartRefused, opened, read_part

RUN_SEPARATOR = "\n\n"  # textract's pptx parser: "\n\n".join(every run of every slide)

_P = "{http://schemas.openxmlformats.org/presentationml/2006/main}"
_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PKG_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_CONTENT_TYPES = "{http://schemas.openxmlformats.org/package/2006/content-types}"
_OFFICE_DOCUMENT = ("http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
                    "officeDocument")
# python-pptx's Presentation() accepts these main parts (pptx, pptm) and no other.
_PRESENTATION_TYPES = frozenset({
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
    "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml",
})
_SLIDE_TYPE = "application/vnd.openxmlformats-officedocument.presentationml.slide+xml"

# Errors of a package that cannot be walked here: textract then decides.
_UNREADABLE = (PartRefused, zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError,
               RuntimeError, NotImplementedError)

Slides = list[list[str]]  # the runs' texts, slide by slide
ContentTypes = Callable[[str], "str | None"]  # partname -> its content type


def read(path: Path, container: zipfile.ZipFile | None = None) -> Slides | None:
    """Each slide's runs as textract reads them, or None (see the module's docstring).
    `container`: the file's, opened by the guards already."""
    try:
        with opened(path, container) as zf:
            return _read_checked(zf)
    except _UNREADABLE:
        return None


def text(slides: Slides) -> str:
    """The text textract gives: every run of every slide, a blank line between runs."""
    return RUN_SEPARATOR.join(run for slide in slides for run in slide)


def ends(slides: Slides) -> list[int] | None:
    """Where each slide ends in `text(slides)`: a slide ends where the next slide's first
    run starts (the separator before it is the slide's last characters); the last slide,
    and empty slides after the last run, end at the end of the text."""
    starts, at = [], 0  # where each run starts in the text
    for slide in slides:
        for run in slide:
            starts.append(at)
            at += len(run) + len(RUN_SEPARATOR)
    total = max(0, at - len(RUN_SEPARATOR))
    found, seen = [], 0
    for slide in slides:
        seen += len(slide)
        found.append(starts[seen] if seen < len(starts) else total)
    return found or None


def slide_parts(zf: zipfile.ZipFile) -> list[str]:
    """The slide part names in presentation order (p:sldIdLst through the rels), read
    without the package checks `read` makes (metadata's slide count, pages' fallback)."""
    presentation = read_part(zf, "ppt/presentation.xml")
    rels = read_part(zf, "ppt/_rels/presentation.xml.rels")
    if presentation is None or rels is None:
        raise ValueError("not a presentation")
    targets = {rel.get("Id"): rel.get("Target", "")
               for rel in rels.iter(_PKG_RELS + "Relationship")}
    return [_partname("/ppt", targets[sld.get(_R + "id")])[1:]
            for sld in presentation.iter(_P + "sldId")]


def slide_runs(zf: zipfile.ZipFile, name: str) -> list[str]:
    """The texts of the slide's runs, in python-pptx's order. ValueError where
    python-pptx would fail: no shape tree, a run without its text element."""
    slide = read_part(zf, name)
    if slide is None:
        raise ValueError("missing slide")
    tree = slide.find(f"{_P}cSld/{_P}spTree")
    if tree is None:
        raise ValueError("a slide without a shape tree")
    runs: list[str] = []
    for shape in tree:
        # Top-level p:sp only: python-pptx gives groups, pictures, connectors and graphic
        # frames (tables) no text frame, so textract skips their text.
        if shape.tag != _P + "sp":
            continue
        body = shape.find(_P + "txBody")
        if body is None:
            continue
        for paragraph in body.iterchildren(_A + "p"):
            for run in paragraph.iterchildren(_A + "r"):
                t = run.find(_A + "t")
                if t is None:
                    raise ValueError("a run without text")
                runs.append(t.text or "")
    return runs


# --- the package as python-pptx loads it --------------------------------------------------
def _read_checked(zf: zipfile.ZipFile) -> Slides | None:
    content_type = _content_types(zf)
    rels = _reachable_rels(zf, content_type)
    if rels is None:
        return None
    main = [target for kind, target in rels["/"].values() if kind == _OFFICE_DOCUMENT]
    if len(main) != 1 or content_type(main[0]) not in _PRESENTATION_TYPES:
        return None
    presentation = read_part(zf, main[0][1:])
    if presentation is None:
        return None
    slides = []
    for sld in presentation.iter(_P + "sldId"):
        _, name = rels[main[0]][sld.get(_R + "id")]
        if content_type(name) != _SLIDE_TYPE:
            return None
        slides.append(slide_runs(zf, name[1:]))
    return slides


def _content_types(zf: zipfile.ZipFile) -> ContentTypes:
    """partname -> content type, as python-pptx looks it up: the override for the part
    (case-insensitive), else the default for its extension; None if neither."""
    root = read_part(zf, "[Content_Types].xml")
    if root is None:
        raise ValueError("no [Content_Types].xml")
    overrides = {el.get("PartName", "").lower(): el.get("ContentType")
                 for el in root.iter(_CONTENT_TYPES + "Override")}
    defaults = {el.get("Extension", "").lower(): el.get("ContentType")
                for el in root.iter(_CONTENT_TYPES + "Default")}

    def content_type(partname: str) -> str | None:
        if partname.lower() in overrides:
            return overrides[partname.lower()]
        ext = posixpath.splitext(partname)[1]
        return defaults.get(ext[1:].lower() if ext.startswith(".") else ext.lower())

    return content_type


def _reachable_rels(zf: zipfile.ZipFile, content_type: ContentTypes
                    ) -> dict[str, dict[str, tuple[str, str]]] | None:
    """partname -> {rId: (type, target partname)} for every part python-pptx loads: all
    reachable from the package's relationships that exist. Like python-pptx, a
    relationship to a missing part is dropped; None if a part has no content type."""
    members = set(zf.namelist())
    found: dict[str, dict[str, tuple[str, str]]] = {}
    todo = ["/"]
    while todo:
        part = todo.pop()
        if part in found:
            continue
        if part != "/" and content_type(part) is None:
            return None
        base = posixpath.split(part)[0]
        root = read_part(zf, _rels_member(part))
        found[part] = {}
        for rel in root.iter(_PKG_RELS + "Relationship") if root is not None else ():
            if rel.get("TargetMode") == "External":
                continue
            rid, kind, target = rel.get("Id"), rel.get("Type"), rel.get("Target")
            if rid is None or kind is None or target is None:
                return None
            name = _partname(base, target)
            if name[1:] in members:
                found[part][rid] = (kind, name)
                todo.append(name)
    return found


def _partname(base: str, target: str) -> str:
    """A relationship's target as a part name (python-pptx's PackURI.from_rel_ref)."""
    return posixpath.abspath(posixpath.join(base, target))


def _rels_member(partname: str) -> str:
    """The ZIP member holding a part's relationships: /ppt/x.xml -> ppt/_rels/x.xml.rels."""
    base, name = posixpath.split(partname)
    return posixpath.join(base, "_rels", name + ".rels")[1:]

