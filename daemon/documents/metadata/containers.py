"""Metadata of ZIP-based documents: OOXML core/app properties, ODF meta.xml, EPUB OPF."""

from __future__ import annotations

import zipfile
from pathlib import Path

from daemon.documents.metadata.values import Found
from daemon.documents.slides import slide_parts
from daemon.documents.zipxml import local_name, opened, read_part, text_of

# Each reader takes `container`: the file's ZIP as the guards opened it (guards.Checked),
# or None to open the file here.


def read_ooxml(path: Path, found: Found, slides: int | None = None,
               container: zipfile.ZipFile | None = None) -> None:
    """docProps/core.xml (Dublin Core) and docProps/app.xml (application, Word's pages).
    A presentation's pages are its slides: `slides` when the caller counted them."""
    with opened(path, container) as zf:
        core = read_part(zf, "docProps/core.xml")
        for el in core.iter() if core is not None else ():
            name = local_name(el)
            if name in ("created", "modified"):
                found.date(name, text_of(el))
            elif name in ("title", "subject", "description", "keywords", "language"):
                found.text(name, text_of(el))
            elif name == "creator":
                found.text("author", text_of(el))
        app = read_part(zf, "docProps/app.xml")
        # Only the two statistics used: app.xml also holds vectors of every heading title.
        stats = {name: text_of(el) for el in (app if app is not None else ())
                 if (name := local_name(el)) in ("Application", "Pages")}
        found.text("creator", stats.get("Application"))
        if "ppt/presentation.xml" in zf.namelist():
            # the slides textract reads
            found.count("pages", len(slide_parts(zf)) if slides is None else slides)
        elif "word/document.xml" in zf.namelist():
            found.count("pages", stats.get("Pages"))  # as Word last laid it out


def read_odf(path: Path, found: Found, container: zipfile.ZipFile | None = None) -> None:
    """meta.xml: Dublin Core, ODF's meta: elements and the page-count statistic."""
    with opened(path, container) as zf:
        root = read_part(zf, "meta.xml")
    if root is None:
        return
    keywords = []
    for el in root.iter():
        name = local_name(el)
        if name in ("title", "subject", "description", "language"):
            found.text(name, text_of(el))
        elif name == "initial-creator":
            found.text("author", text_of(el))
        elif name == "creation-date":
            found.date("created", text_of(el))
        elif name == "date":
            found.date("modified", text_of(el))
        elif name == "generator":
            found.text("creator", text_of(el))
        elif name == "keyword":
            keywords.append(text_of(el))
        elif name == "document-statistic":
            found.count("pages", next((v for k, v in el.attrib.items()
                                       if k.endswith("}page-count")), None))
    if "author" not in found.values:  # no initial creator: the last one to save it
        found.text("author", next((text_of(el) for el in root.iter()
                                   if local_name(el) == "creator"), None))
    found.text("keywords", ", ".join(k for k in keywords if k))


def read_epub(path: Path, found: Found, container: zipfile.ZipFile | None = None) -> None:
    """The <metadata> of the OPF package META-INF/container.xml names."""
    with opened(path, container) as zf:
        manifest = read_part(zf, "META-INF/container.xml")
        rootfile = next((el.get("full-path") for el in manifest.iter()
                         if local_name(el) == "rootfile"), None) if manifest is not None else None
        package = read_part(zf, rootfile) if rootfile else None
    if package is None:
        return
    subjects = []
    for el in package.iter():
        name = local_name(el)
        if name in ("title", "description", "language"):
            found.text(name, text_of(el))
        elif name == "creator":
            found.text("author", text_of(el))
        elif name == "subject":
            subjects.append(text_of(el))
        elif name == "date":
            event = next((v for k, v in el.attrib.items() if k.rsplit("}", 1)[-1] == "event"),
                         "")
            found.date("modified" if event == "modification" else "created", text_of(el))
        elif name == "meta" and el.get("property") == "dcterms:modified":
            found.date("modified", text_of(el))
    found.text("subject", ", ".join(s for s in subjects if s))
