"""PDF metadata: the Info dictionary, /Lang and the page count."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from daemon.documents import dates
from daemon.documents.guards import PDFINFO_METADATA_ARGS, PDFINFO_TIMEOUT
from daemon.documents.metadata.values import Found, MetadataUnreadable
from daemon.documents.pdf_catalog import Catalog, CatalogUnreadable, read_catalog

_PDFINFO_KEYS = {"Title": "title", "Subject": "subject", "Keywords": "keywords",
                 "Author": "author", "Creator": "creator", "Producer": "producer"}
# Every field pdfinfo prints: a line starting with another word continues the value above
# (a title may hold a newline).
_PDFINFO_FIELD = re.compile(
    r"(Title|Subject|Keywords|Author|Creator|Producer|CreationDate|ModDate|Custom Metadata|"
    r"Metadata Stream|Tagged|UserProperties|Suspects|Form|JavaScript|Pages|Encrypted|"
    r"Page size|Page rot|File size|Optimized|PDF version|Page +\d+ size|Page +\d+ rot):"
    r"[ ]?(.*)")


def read_pdf(path: Path, found: Found,
             catalog: Catalog | CatalogUnreadable | None = None,
             pdfinfo_output: bytes | None = None) -> None:
    """The Info dictionary, /Lang and page count, through pdfminer without rendering.

    `catalog`: the guards' read of this PDF's catalog (or why pdfminer could not read it),
    used instead of reading the PDF again; None reads it here. What pdfminer cannot read,
    pdfinfo does: from `pdfinfo_output` when the guards ran it already.
    """
    from pdfminer.utils import decode_text

    if catalog is None:
        try:
            catalog = read_catalog(path)
        except CatalogUnreadable as exc:
            catalog = exc
    if isinstance(catalog, CatalogUnreadable):
        _pdfinfo_fields(path, found, pdfinfo_output)
        return

    def string(value: object) -> str | None:
        return decode_text(value) if isinstance(value, bytes) else None

    info = catalog.info
    for field, key in _PDFINFO_KEYS.items():
        found.text(key, string(info.get(field)))
    for field, key in (("CreationDate", "created"), ("ModDate", "modified")):
        if field in info:
            found.date(key, string(info[field]) or "?", dates.pdf_date)
    found.text("language", string(catalog.lang))
    if catalog.pages is not None:
        found.count("pages", catalog.pages)
    else:
        # no usable /Count: pdfinfo walks the page tree
        _pdfinfo_fields(path, found, pdfinfo_output)


def _pdfinfo_fields(path: Path, found: Found, output: bytes | None) -> None:
    """pdfinfo's fields: from `output` when the guards ran it, else from a run here."""
    if output is None:
        proc = subprocess.run([*PDFINFO_METADATA_ARGS, str(path.resolve())],
                              capture_output=True, stdin=subprocess.DEVNULL,
                              timeout=PDFINFO_TIMEOUT, check=False)
        if proc.returncode != 0:
            raise MetadataUnreadable(f"pdfinfo exited with {proc.returncode}")
        output = proc.stdout
    parse_pdfinfo(output, found)


def parse_pdfinfo(output: bytes, found: Found) -> None:
    """The fields of `pdfinfo -rawdates -enc UTF-8` output, into `found`."""
    fields: dict[str, list[list[str]]] = {}
    current: list[str] | None = None
    for line in output.decode("utf-8", "replace").split("\n"):
        match = _PDFINFO_FIELD.fullmatch(line)
        if match:
            current = [match.group(2)]
            fields.setdefault(match.group(1), []).append(current)
        elif current is not None:
            current.append(line)
    # The first of each Info field is pdfinfo's own (a forged "Author:" line inside a title
    # comes later, and only says what the document could have said anyway); the last Pages
    # line is pdfinfo's (it follows every document-controlled field), as the guards read it.
    first = {key: "\n".join(lines[0]) for key, lines in fields.items()}
    for field, key in _PDFINFO_KEYS.items():
        found.text(key, first.get(field))
    found.date("created", first.get("CreationDate"), dates.pdf_date)
    found.date("modified", first.get("ModDate"), dates.pdf_date)
    if "Pages" in fields:
        found.count("pages", "\n".join(fields["Pages"][-1]).strip())
