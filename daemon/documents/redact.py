"""Paths out of messages: an error a client reads names the problem, never where it was.

Libraries and tools put file names in their errors (PIL's "cannot identify image file
'<install>/var/spool/slot-1/<id>.gif'", pdfinfo's "Couldn't open file ..."), which tells
any client where the service is installed and how its spool is laid out.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

# An absolute path of two or more parts, not glued to a word ("I/O", "</w:body>" and
# "application/pdf" stay); quotes around it go with it.
_ABSOLUTE = re.compile(r"""(['"]?)(?<![\w.<>/])(?:/[\w.@+,=~-]+){2,}/?\1""")


def without_paths(message: str, document: Path | str | None = None) -> str:
    """`message` with the document's path said as "the document", other paths in the
    document's folder (the tools' temporary files) as "a temporary file", and any other
    absolute path as "a file"."""
    if document is not None:
        for form in {str(document), os.path.abspath(document)}:
            message = _quoted(form).sub("the document", message)
        folder = os.path.dirname(os.path.abspath(document))
        message = re.sub(r"""(['"]?)""" + re.escape(folder) + r"""/[^\s'"():,;]*\1""",
                         "a temporary file", message)
    return _ABSOLUTE.sub("a file", message)


# Folders every machine has: real documents name them (a manual saying "/tmp/x"), and
# they tell a client nothing about this installation.
_SHARED_FOLDERS = frozenset({"/", "/tmp", "/var/tmp", "/usr/tmp", "/dev/shm"})


def without_service_paths(text: str, document: Path | str) -> str:
    """Extracted `text` without the service's own folders: the document's spool folder
    and the tools' TMPDIR. PostScript runs as a program, and Ghostscript's -dSAFER still
    lets it create a temporary file and print its name (`null (w) .tempfile pop =`),
    which would hand the client the install path. A real document cannot know these
    paths, so nothing real is removed; the search is one substring scan per folder."""
    folders = {os.path.dirname(os.path.abspath(document)), tempfile.gettempdir()}
    folders |= {os.path.realpath(f) for f in folders}
    for folder in sorted(folders - _SHARED_FOLDERS, key=len, reverse=True):  # longest first
        if folder in text:
            text = re.sub(re.escape(folder) + r"""(?:/[^\s'"()<>]*)?""",
                          "(a temporary file)", text)
    return text


def _quoted(text: str) -> re.Pattern[str]:
    return re.compile(r"""(['"]?)""" + re.escape(text) + r"\1")
