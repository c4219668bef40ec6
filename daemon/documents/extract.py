"""Run textract on one file and sort whatever goes wrong into the error tree.

textract lets through errors of every library and tool under it. The sorting rule: a
tool that was not found, could not run, or died of a signal is our machinery; a tool or
parser that ran and rejected the input is the document's fault.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import io
import math
import os
import re
import resource
import signal
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import chardet
import structlog
import textract
from textract import exceptions as tx
from textract.parsers import EXTENSION_SYNONYMS
from textract.parsers.utils import BaseParser, BytesParser, DecodedParser

from daemon.documents import legacy_doc, outlook, pages, slides, word
from daemon.documents.metadata import Container
from daemon.documents.redact import without_paths, without_service_paths
from daemon.errors import (
    CorruptDocument,
    DocumentError,
    DocumentTooComplex,
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
    # The container the text was read from, already parsed, for the metadata reader: a
    # ZIP the guards opened, or a .msg's OLE file.
    container: Container | None = None


def extract_text(path: Path, ext: str, method: str = "", *, fast_doc: bool = True,
                 postscript_seconds: int | None = None) -> str:
    """The document's text, or a DocumentError / MachineryError saying why not."""
    return extract(path, ext, method, fast_doc=fast_doc,
                   postscript_seconds=postscript_seconds).text


def extract(path: Path, ext: str, method: str = "", *, fast_doc: bool = True,
            postscript_seconds: int | None = None,
            container: zipfile.ZipFile | None = None,
            data: bytes | None = None) -> Extraction:
    """extract_text's text, with the page boundaries of a scanned PDF read through OCR.

    `postscript_seconds` bounds the CPU time of a PostScript program (None: no bound).
    `container`: a ZIP-based document's, as the guards opened it (guards.Checked).
    `data`: the file's bytes when the caller holds them (a .msg is read from them).
    """
    if fast_doc and ext == "doc" and not method:
        # Milliseconds instead of a LibreOffice start; None when it cannot vouch for the
        # text, and textract's own path below runs as before.
        text = legacy_doc.extract(path)
        if text is not None:
            return Extraction(text)
    with _sorted_errors(path, ext, method):
        if ext in PAYLOAD_EXTS and not method:
            return Extraction(payload_text(_bytes_of(path, data), ext))
        if ext == "ps" and postscript_seconds is not None:
            return Extraction(without_service_paths(_postscript(path, postscript_seconds), path))
        if ext == "docx" and not method and (
                body := word.docx_text(path, container)) is not None:
            return Extraction(without_service_paths(_as_textract_encodes(body), path),
                              container=container)
        if ext == "msg" and not method and (
                message := outlook.read(_bytes_of(path, data))):
            shown = _as_textract_encodes(textract_decoded(message.raw))
            return Extraction(without_service_paths(shown, path), container=message.ole)
        if ext == "pptx" and not method and (
                found := slides.read(path, container)) is not None:
            # The slides' XML walked as textract walks it, without python-pptx's load of
            # the whole package; the slides' ends come with the text.
            walked = _as_textract_encodes(slides.text(found))
            shown = without_service_paths(walked, path)
            return Extraction(shown, slides.ends(found) if shown == walked else None,
                              container)
        if ext == "pdf" and method == "tesseract":
            # textract's OCR joins the pages with nothing between them: the same steps
            # here keep the boundaries (and raise what textract raises).
            return Extraction(*pages.ocr_pdf(path))
        kwargs = {"method": method} if method else {}
        # Some parsers print to stdout (xlrd: "WARNING *** file size ..."), which is this
        # process's JSON log: catch it and log it as one field instead.
        with contextlib.redirect_stdout(io.StringIO()) as out, \
                contextlib.redirect_stderr(out):
            raw = _textract_process(path, ext, kwargs, data)
        if out.getvalue().strip():
            log.info("extract.library_output", output=out.getvalue().strip()[:2000])
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return Extraction(without_service_paths(text, path), container=container)


def _textract_process(path: Path, ext: str, kwargs: dict[str, str],
                      data: bytes | None) -> bytes:
    """textract.process(path, extension=ext, **kwargs): the parser textract picks, with
    textract's decoding of its output (textract_decoded, which skips chardet's pass over
    plain ASCII: 0.13 ms of a small mail, 0.2 ms of a small RTF) and its UTF-8 encoding.
    A parser of bytes (docx) goes through textract.process itself."""
    parser_class = _parser_class(ext)
    if parser_class is None or issubclass(parser_class, BytesParser):
        return textract.process(str(path), extension=ext, **kwargs)
    parser = parser_class()
    if issubclass(parser_class, DecodedParser):  # eml, html, ...: parsed in this process
        decoded = textract_decoded(_bytes_of(path, data))
        text = parser.extract_from_text(decoded, **kwargs)
    else:  # BaseParser.process_source: a path in, bytes or text out
        raw = parser.extract(str(path), **kwargs)
        text = raw if isinstance(raw, str) else textract_decoded(raw)
    return text.encode("utf-8", "ignore")


@functools.cache
def _parser_class(ext: str) -> type[BaseParser] | None:
    """The Parser class textract routes `ext` to (its synonyms applied); None when
    textract has none, and textract.process says so with its own error."""
    suffix = EXTENSION_SYNONYMS.get(f".{ext}", f".{ext}")
    try:
        module = importlib.import_module(f"textract.parsers{suffix}_parser")
    except ImportError:
        return None
    return getattr(module, "Parser", None)


def _bytes_of(path: Path, data: bytes | None) -> bytes:
    """The document's bytes: the caller's when it holds them, else the file's."""
    return path.read_bytes() if data is None else data


def _as_textract_encodes(text: str) -> str:
    """`text` through textract's output encoding (UTF-8, dropping what cannot be) and
    extract's decoding of it."""
    return text.encode("utf-8", "ignore").decode("utf-8")


def ocr_page(path: Path, number: int) -> bytes:
    """Page `number` of a scanned PDF read through OCR (pages.ocr_page: its raw output,
    for pages.ocr_text to decode with the others), errors sorted as `extract` sorts them."""
    with _sorted_errors(path, "pdf", "tesseract"):
        output = pages.ocr_page(path, number)
    return output


@contextlib.contextmanager
def _sorted_errors(path: Path, ext: str, method: str) -> Iterator[None]:
    """Whatever textract or a tool under it raises, as a DocumentError or MachineryError."""
    try:
        yield
    except tx.ExtensionNotSupported as exc:
        raise UnsupportedFormat(f"no extractor for .{ext}") from exc
    except tx.UnknownMethod as exc:
        raise UnsupportedFormat(f"method {method!r} is not available for .{ext}") from exc
    except tx.ShellError as exc:
        raise _classify_shell_error(exc, path) from exc
    except (DocumentError, MachineryError):
        raise  # sorted already (text_file's verdict, a guard's limit)
    except (tx.LibreOfficeNotFound, tx.MissingModuleError) as exc:
        raise ExtractorUnavailable(without_paths(str(exc).strip().splitlines()[0])) from exc
    except tx.MissingFileError as exc:
        raise MachineryError("the spooled file vanished before extraction") from exc
    except MemoryError as exc:
        raise MachineryError("the parser ran out of memory") from exc
    except OSError as exc:
        if exc.errno is None:
            # Parsers' own errors that subclass OSError (olefile's OleFileError for a
            # damaged .msg/.xls) carry no errno: they are about the bytes, not the machine.
            raise CorruptDocument(_describe(exc, path)) from exc
        if exc.errno == errno.ENOSPC:
            raise SpoolFull("no space left for the extractor's temporary files") from exc
        raise MachineryError(_describe(exc, path)) from exc
    except Exception as exc:
        raise CorruptDocument(_describe(exc, path)) from exc


# Plain ASCII text: printable characters and whitespace only (no ESC, which starts
# ISO-2022, no NUL, which UTF-16/32 carry), and none of the characters after which chardet
# may answer an encoding that reads ASCII otherwise than ASCII does: "~{" (HZ-GB-2312),
# "+" (UTF-7), "<" (a markup declaration of some charset).
_ASCII_TEXT = bytes(range(0x20, 0x7F)) + b"\t\n\r\f\v"
_OTHER_ENCODING_STARTS = (b"+", b"<", b"~{")


def _plain_ascii(data: bytes) -> bool:
    # translate() and `in` at C speed: a regex over the bytes cost a tiny job 26 us
    return (not data.translate(None, _ASCII_TEXT)
            and not any(start in data for start in _OTHER_ENCODING_STARTS))


# Formats textract decodes whole and parses in this process (its DecodedParsers), with no
# container for a guard to open and no metadata of their own: a job of one of these is
# read from its payload, never spooled (the file would be written only to be read back).
PAYLOAD_EXTS = frozenset({"txt", "csv", "tsv", "psv", "json"})


def payload_text(data: bytes, ext: str) -> str:
    """The text textract gives for a document of a PAYLOAD_EXTS format with these bytes.

    textract's own parser on the text decoded as textract decodes it (text_file, which
    is exact and cheaper), and textract's round trip through UTF-8 with errors ignored
    (what drops a lone surrogate a JSON string escaped); none of the file handling or
    parser look-up around it, which was most of a small CSV's cost."""
    with _sorted_errors(Path(f"document.{ext}"), ext, ""):
        text = text_file(data)
        if ext == "txt":
            return text
        parsed = importlib.import_module(f"textract.parsers.{ext}_parser").Parser() \
            .extract_from_text(text)
    return _as_textract_encodes(parsed)


def textract_decoded(raw: bytes) -> str:
    """A parser's output bytes decoded as textract decodes them (BaseParser.decode):
    chardet's encoding when it is more than 80 % sure, else UTF-8, errors replaced.
    Plain ASCII is decoded without chardet's pass, as in text_file."""
    if _plain_ascii(raw):
        return raw.decode("ascii")
    found = chardet.detect(raw)
    encoding = found["encoding"] if found["confidence"] > 0.80 else "utf8"
    if encoding is None:  # binary bytes: textract's decode(None) raises this TypeError
        raise TypeError("decode() argument 'encoding' must be str, not None")
    return raw.decode(encoding, errors="replace")


def text_file(data: bytes) -> str:
    """A .txt file's text, as textract's txt parser gives it, without its cost.

    textract reads the bytes and decodes them as it decodes any parser's output
    (textract_decoded, which decodes plain ASCII without chardet's pass: a tenth of a tiny
    job's CPU). Bytes chardet takes for binary are a clear CorruptDocument, where textract
    fails with a TypeError. No tool and no file: the pool decodes a .txt upload from its
    payload, never spooled."""
    try:
        return textract_decoded(data)
    except TypeError:
        raise CorruptDocument("the file holds binary data, not text") from None


# ps2ascii's own command (ps2ascii is a shell script around it), run here rather than
# through textract so that the program's CPU time can be bounded.
_GHOSTSCRIPT = ("gs", "-q", "-dSAFER", "-sDEVICE=txtwrite", "-o", "-")


def _postscript(path: Path, cpu_seconds: int) -> str:
    """ps2ascii's text of `path`, Ghostscript running under RLIMIT_CPU.

    A PostScript document is a program: `{ } loop` is 16 bytes that never end, and only
    the job's deadline would stop it, as a failure of the extractor. Under the limit it
    ends as the document's own error. The limit is set on the running process (prlimit)
    rather than in a preexec_fn, which is unsafe in a process with threads; CPU time
    counts from the start either way.
    """
    args = [*_GHOSTSCRIPT, str(path)]
    before = _children_cpu()
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise tx.ShellError(" ".join(args), 127, b"", b"") from None
    with proc:
        try:
            # SIGXCPU at the soft limit; SIGKILL a second later if it is ignored.
            resource.prlimit(proc.pid, resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        except ProcessLookupError:
            pass  # it has ended already
        stdout, stderr = proc.communicate()
    spent = math.inf if proc.returncode == -signal.SIGXCPU else _children_cpu() - before
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL) and spent >= cpu_seconds:
        raise DocumentTooComplex(f"the PostScript program ran for more than {cpu_seconds} s "
                                 f"of CPU; the limit is {cpu_seconds} "
                                 f"(MAX_POSTSCRIPT_SECONDS)")
    if proc.returncode != 0:
        raise tx.ShellError(" ".join(args), proc.returncode, stdout, stderr)
    return stdout.decode("utf-8", "replace")


def _children_cpu() -> float:
    """CPU seconds of this process's ended children: the difference across one run is
    that run's (only the CPU limit sends SIGXCPU; SIGKILL may come from elsewhere)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _classify_shell_error(exc: tx.ShellError, path: Path) -> Exception:
    tool = os.path.basename(exc.command.split()[0]) if exc.command else "tool"
    if exc.is_not_installed():
        return ExtractorUnavailable(f"{tool} is not installed")
    if exc.exit_code < 0 or exc.exit_code in _TOOL_BROKEN_EXIT:
        return MachineryError(f"{tool} failed with exit code {exc.exit_code}")
    stderr = exc.stderr if isinstance(exc.stderr, bytes) else str(exc.stderr or "").encode()
    if _PASSWORD.search(stderr):
        return EncryptedDocument(f"{tool}: the document is password-protected")
    first = stderr.decode("utf-8", "replace").strip().splitlines()[:1]
    reason = without_paths(first[0], path)[:200] if first else exc.exit_code
    return CorruptDocument(f"{tool} rejected the document: {reason}")


def _describe(exc: Exception, path: Path) -> str:
    """The exception's type and first line, with no path in it (see redact)."""
    text = str(exc).strip().splitlines()[:1]
    return (f"{type(exc).__name__}: {without_paths(text[0], path)[:200]}" if text
            else type(exc).__name__)
