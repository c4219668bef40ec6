"""Run textract on one file and sort whatever goes wrong into the error tree.

textract lets through errors of every library and tool under it. The sorting rule: a
tool that was not found, could not run, or died of a signal is our machinery; a tool or
parser that ran and rejected the input is the document's fault.
"""

from __future__ import annotations

import contextlib
import errno
import io
import re
from pathlib import Path
from typing import NamedTuple

import structlog
import textract
from textract import exceptions as tx

from daemon.documents import legacy_doc, pages
from daemon.errors import (
    CorruptDocument,
    EncryptedDocument,
    ExtractorUnavailable,
    MachineryError,
    SpoolFull,
    UnsupportedFormat,
)

log = structlog.get_logger()

_PASSWORD = re.compile(rb"password|encrypt", re.IGNORECASE)
# 126: found but not executable; 127: not found (from a shell).
_TOOL_BROKEN_EXIT = {126, 127}


class Extraction(NamedTuple):
    text: str
    # Where each page ends in `text`, when the extractor itself knew (OCR of a PDF); None
    # otherwise: daemon.documents.pages cuts other texts after the fact.
    page_ends: list[int] | None = None


def extract_text(path: Path, ext: str, method: str = "", *, fast_doc: bool = True) -> str:
    """The document's text, or a DocumentError / MachineryError saying why not."""
    return extract(path, ext, method, fast_doc=fast_doc).text


def extract(path: Path, ext: str, method: str = "", *, fast_doc: bool = True) -> Extraction:
    """extract_text's text, with the page boundaries of a scanned PDF read through OCR."""
    if fast_doc and ext == "doc" and not method:
        # Milliseconds instead of a LibreOffice start; None when it cannot vouch for the
        # text, and textract's own path below runs as before.
        text = legacy_doc.extract(path)
        if text is not None:
            return Extraction(text)
    try:
        if ext == "pdf" and method == "tesseract":
            # textract's OCR joins the pages with nothing between them: the same steps
            # here keep the boundaries (and raise what textract raises).
            return Extraction(*pages.ocr_pdf(path))
        kwargs = {"method": method} if method else {}
        # Some parsers print to stdout (xlrd: "WARNING *** file size ..."), which is this
        # process's JSON log: catch it and log it as one field instead.
        with contextlib.redirect_stdout(io.StringIO()) as out, \
                contextlib.redirect_stderr(out):
            raw = textract.process(str(path), extension=ext, **kwargs)
        if out.getvalue().strip():
            log.info("extract.library_output", output=out.getvalue().strip()[:2000])
    except tx.ExtensionNotSupported as exc:
        raise UnsupportedFormat(f"no extractor for .{ext}") from exc
    except tx.UnknownMethod as exc:
        raise UnsupportedFormat(f"method {method!r} is not available for .{ext}") from exc
    except tx.ShellError as exc:
        raise _classify_shell_error(exc) from exc
    except (tx.LibreOfficeNotFound, tx.MissingModuleError) as exc:
        raise ExtractorUnavailable(str(exc).strip().splitlines()[0]) from exc
    except tx.MissingFileError as exc:
        raise MachineryError("the spooled file vanished before extraction") from exc
    except MemoryError as exc:
        raise MachineryError("the parser ran out of memory") from exc
    except OSError as exc:
        if exc.errno is None:
            # Parsers' own errors that subclass OSError (olefile's OleFileError for a
            # damaged .msg/.xls) carry no errno: they are about the bytes, not the machine.
            raise CorruptDocument(_describe(exc)) from exc
        if exc.errno == errno.ENOSPC:
            raise SpoolFull("no space left for the extractor's temporary files") from exc
        raise MachineryError(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise CorruptDocument(_describe(exc)) from exc
    if isinstance(raw, bytes):
        return Extraction(raw.decode("utf-8", "replace"))
    return Extraction(str(raw))


def _classify_shell_error(exc: tx.ShellError) -> Exception:
    tool = exc.command.split()[0] if exc.command else "tool"
    if exc.is_not_installed():
        return ExtractorUnavailable(f"{tool} is not installed")
    if exc.exit_code < 0 or exc.exit_code in _TOOL_BROKEN_EXIT:
        return MachineryError(f"{tool} failed with exit code {exc.exit_code}")
    stderr = exc.stderr if isinstance(exc.stderr, bytes) else str(exc.stderr or "").encode()
    if _PASSWORD.search(stderr):
        return EncryptedDocument(f"{tool}: the document is password-protected")
    first = stderr.decode("utf-8", "replace").strip().splitlines()[:1]
    return CorruptDocument(f"{tool} rejected the document: {first[0] if first else exc.exit_code}")


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[:1]
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
