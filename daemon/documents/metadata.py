"""A document's own metadata, read after its text was extracted.

`read_metadata` answers the keys that exist for the document, out of: content_type (the
detected MIME type), pages, title, author, subject, description, keywords, created,
modified (ISO 8601 UTC), creator (the application that made it), producer (PDF: what wrote
the PDF), language (only when the document declares one), chars, words, sha256.

`pages` is the document's page count where it has one: counted for PDF (the page tree's
/Count, or pdfinfo's count) and PPTX (its slides, as pages.page_ends cuts them);
declared by the writing application for docx, odt and doc (their last layout; those
formats have no page boundaries in their text). `chars` is len(text), `words` the count
of whitespace-separated tokens in it.

It never raises. A value that cannot be read exactly (a malformed date, a page count that
is not a number) is left out and named in `dropped` with a reason, for the caller to log;
a source that cannot be read at all (a damaged container, pdfinfo failing) gives `error`
and the keys every document has: content_type, chars, words, sha256. Values are never put
in `dropped` or `error`: they are the document's data and stay out of logs.

Cost is bounded: PDF through pdfminer's trailer and catalog only (no fallback scan of a
broken file: pdfinfo, the C tool the guards already run, reads those under their
timeout); ZIP-based formats read one or two small XML parts (zipxml: size cap, no DTD, no
entity expansion); EML, HTML and RTF read at most HEAD_BYTES of the file; OLE2 (doc, xls,
msg) reads the property streams only.

Sources, per format:
  pdf                Info dictionary, /Lang, page count (pdfminer; pdfinfo for the rest)
  docx, xlsx, pptx   docProps/core.xml + docProps/app.xml; pptx pages = its slides
  odt, ods           meta.xml (pages: odt's page-count statistic)
  epub               the OPF package named by META-INF/container.xml
  eml                headers: Subject, From, Date, Keywords, Content-Language
  msg                the message's MAPI properties (subject, sender, submit time)
  doc, xls           the OLE SummaryInformation stream
  html, htm          <title>, <meta name=author|description|keywords>, <html lang>
  rtf                the {\\info} group
  ps                 the DSC header comments (%%Title, %%Creator, %%For, %%Pages, ...)
  ps                 the DSC header comments (%%Title, %%Creator, %%For, %%Pages, ...)
"""

from __future__ import annotations

import email.policy
import hashlib
import re
import struct
import subprocess
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NamedTuple

from daemon.documents import dates
from daemon.documents.formats import Format
from daemon.documents.guards import PDFINFO_TIMEOUT
from daemon.documents.pages import slide_parts
from daemon.documents.zipxml import PartRefused, local_name, read_part, text_of

HEAD_BYTES = 256 * 1024  # how much of an EML, HTML or RTF file is read for its metadata
MAX_VALUE_CHARS = 1000  # a title is a line, not a document: longer values are cut
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class MetadataUnreadable(ValueError):
    """Raised inside this module when a source cannot be read; its message is ours."""


class Metadata(NamedTuple):
    values: dict[str, Any]  # the job's `metadata` object
    dropped: dict[str, str]  # key -> why it was left out (never the value)
    error: str | None  # why the document's own metadata could not be read at all


def read_metadata(path: Path, fmt: Format, text: str, *, sha256: str | None = None,
                  pdfinfo_output: bytes | None = None) -> Metadata:
    """The metadata of the document at `path` whose extracted text is `text`.

    `sha256`: the document's hash when the caller has it already (not computed again).
    `pdfinfo_output`: the stdout of `pdfinfo -rawdates -enc UTF-8` on this PDF when the
    caller ran it already (the guards count pages with pdfinfo): read instead of opening
    the PDF again, which makes a PDF's metadata free but for /Lang, which pdfinfo omits.
    """
    found = _Found()
    error = None
    reader = _READERS.get(fmt.ext)
    if fmt.ext == "pdf" and pdfinfo_output is not None:
        def reader(_path: Path, found: _Found) -> None:
            _parse_pdfinfo(pdfinfo_output, found)
    if reader is not None:
        try:
            reader(path, found)
        except Exception as exc:  # a damaged document's metadata is optional; its text is not
            # Only messages we wrote: a parser's may quote the document.
            error = (str(exc) if isinstance(exc, PartRefused | MetadataUnreadable)
                     else f"{type(exc).__name__} while reading the {fmt.ext} metadata")
    values: dict[str, Any] = {"content_type": fmt.mime, **found.values,
                              "chars": len(text), "words": len(text.split())}
    try:
        values["sha256"] = sha256 or file_sha256(path)
    except OSError as exc:
        error = error or f"cannot hash the document: {exc.strerror}"
    return Metadata(values, found.dropped, error)


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of the file, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class _Found:
    """What the readers found: clean values, and the keys they had to leave out."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.dropped: dict[str, str] = {}

    def text(self, key: str, raw: str | bytes | None) -> None:
        if key in self.values or raw is None:
            return  # the first source named for a key wins
        if isinstance(raw, bytes):
            raw = _decode(raw)
        value = _CONTROL.sub("", raw).strip()
        if value:
            self.values[key] = value[:MAX_VALUE_CHARS]

    def date(self, key: str, raw: str | datetime | None,
             parse: Callable[[str], str | None] = dates.iso_date) -> None:
        if key in self.values or raw is None:
            return
        if isinstance(raw, datetime):
            value = dates.iso_utc(raw) if raw.year >= 1000 else None
        elif not isinstance(raw, str):
            value = None  # a parser's odd type for a damaged date field
        elif not raw.strip():
            return
        else:
            value = parse(raw)
        if value is None:
            self.dropped[key] = "not a valid date"
        else:
            self.values[key] = value
            self.dropped.pop(key, None)

    def count(self, key: str, raw: str | int | None) -> None:
        if key in self.values or raw is None or raw == "":
            return
        try:
            value = int(raw)
        except (TypeError, ValueError):
            self.dropped[key] = "not a number"
            return
        if value < 0:
            self.dropped[key] = "negative"
        else:
            self.values[key] = value


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


# --- PDF ---------------------------------------------------------------------------------
_PDFINFO_KEYS = {"Title": "title", "Subject": "subject", "Keywords": "keywords",
                 "Author": "author", "Creator": "creator", "Producer": "producer"}
# Every field pdfinfo prints: a line starting with another word continues the value above
# (a title may hold a newline).
_PDFINFO_FIELD = re.compile(
    r"(Title|Subject|Keywords|Author|Creator|Producer|CreationDate|ModDate|Custom Metadata|"
    r"Metadata Stream|Tagged|UserProperties|Suspects|Form|JavaScript|Pages|Encrypted|"
    r"Page size|Page rot|File size|Optimized|PDF version|Page +\d+ size|Page +\d+ rot):"
    r"[ ]?(.*)")


def _read_pdf(path: Path, found: _Found) -> None:
    """The Info dictionary, /Lang and page count, through pdfminer without rendering.

    pdfminer first: it reads the trailer and a handful of objects in about a millisecond,
    where starting pdfinfo costs 5-20 ms, as much as pdftotext itself on a small PDF.
    fallback=False: a PDF with a broken xref table would make pdfminer scan the whole
    file in Python; pdfinfo (C, under the guards' timeout) reads those instead, as it does
    encrypted PDFs pdfminer cannot open.
    """
    from pdfminer import pdftypes
    from pdfminer.pdfdocument import PDFDocument
    from pdfminer.pdfparser import PDFParser
    from pdfminer.utils import decode_text

    # pdfminer's resolve1 follows references without a bound, and PDFDocument resolves the
    # trailer's /Root and /Info through it: `4 0 obj 4 0 R endobj` as /Info spins until the
    # job's deadline kills the worker, over metadata, on a PDF pdftotext read fine. Every
    # pdfminer lookup goes through pdftypes.resolve1 at call time, so it is swapped for a
    # bounded one for the length of this read (a worker child runs one job on one thread).
    unbounded, pdftypes.resolve1 = pdftypes.resolve1, _resolve
    try:
        with open(path, "rb") as f:
            doc = PDFDocument(PDFParser(f), fallback=False)
            # info[0] is the newest trailer's (pdfminer follows /Prev back from the end).
            info = {key: _resolve(value) for key, value in (doc.info[0] if doc.info
                                                             else {}).items()}
            pages = _resolve(_resolve(doc.catalog.get("Pages") or {}).get("Count"))
            lang = _resolve(doc.catalog.get("Lang"))
    except Exception:
        _read_pdf_pdfinfo(path, found)
        return
    finally:
        pdftypes.resolve1 = unbounded

    def string(value: object) -> str | None:
        return decode_text(value) if isinstance(value, bytes) else None

    for field, key in _PDFINFO_KEYS.items():
        found.text(key, string(info.get(field)))
    for field, key in (("CreationDate", "created"), ("ModDate", "modified")):
        if field in info:
            found.date(key, string(info[field]) or "?", dates.pdf_date)
    found.text("language", string(lang))
    if isinstance(pages, int):
        found.count("pages", pages)
    else:
        _read_pdf_pdfinfo(path, found)  # no /Count: pdfinfo walks the page tree


_MAX_REFERENCE_HOPS = 32


def _resolve(value: object, default: object = None) -> object:
    """pdfminer's resolve1, giving up after _MAX_REFERENCE_HOPS references in a chain."""
    from pdfminer.pdftypes import PDFObjRef

    for _ in range(_MAX_REFERENCE_HOPS):
        if not isinstance(value, PDFObjRef):
            return value
        value = value.resolve(default=default)
    raise MetadataUnreadable("a loop of indirect references")


def _read_pdf_pdfinfo(path: Path, found: _Found) -> None:
    proc = subprocess.run(["pdfinfo", "-rawdates", "-enc", "UTF-8", str(path.resolve())],
                          capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=PDFINFO_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise MetadataUnreadable(f"pdfinfo exited with {proc.returncode}")
    _parse_pdfinfo(proc.stdout, found)


def _parse_pdfinfo(output: bytes, found: _Found) -> None:
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


# --- OOXML, ODF, EPUB --------------------------------------------------------------------
def _read_ooxml(path: Path, found: _Found) -> None:
    with zipfile.ZipFile(path) as zf:
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
        stats = {local_name(el): text_of(el) for el in app} if app is not None else {}
        found.text("creator", stats.get("Application"))
        if "ppt/presentation.xml" in zf.namelist():
            found.count("pages", len(slide_parts(zf)))  # the slides textract reads
        elif "word/document.xml" in zf.namelist():
            found.count("pages", stats.get("Pages"))  # as Word last laid it out


def _read_odf(path: Path, found: _Found) -> None:
    with zipfile.ZipFile(path) as zf:
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


def _read_epub(path: Path, found: _Found) -> None:
    with zipfile.ZipFile(path) as zf:
        container = read_part(zf, "META-INF/container.xml")
        rootfile = next((el.get("full-path") for el in container.iter()
                         if local_name(el) == "rootfile"), None) if container is not None else None
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


# --- mail ------------------------------------------------------------------------------------
def _read_eml(path: Path, found: _Found) -> None:
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    end = re.search(rb"\r?\n\r?\n", head)
    headers = BytesParser(policy=email.policy.default).parsebytes(
        head[:end.start()] if end else head, headersonly=True)
    for key, header in (("title", "Subject"), ("author", "From"), ("keywords", "Keywords"),
                        ("language", "Content-Language")):
        try:
            found.text(key, headers.get(header))
        except Exception:  # a header policy.default cannot decode: that key only
            found.dropped[key] = "unreadable header"
    try:
        found.date("created", headers.get("Date"), dates.email_date)
    except Exception:
        found.dropped["created"] = "unreadable header"


# MAPI property ids (MS-OXPROPS) read from a .msg's top-level streams.
_MSG_STRINGS = {"title": ("0037",), "author": ("0C1A", "0042")}
_MSG_ADDRESS = ("5D01", "0C1F", "0065")
_PR_CLIENT_SUBMIT_TIME, _PR_MESSAGE_DELIVERY_TIME, _PT_SYSTIME = 0x0039, 0x0E06, 0x0040


def _read_msg(path: Path, found: _Found) -> None:
    import olefile  # a textract dependency, already loaded by the extraction of a .msg

    with olefile.OleFileIO(str(path)) as ole:
        def prop(ids: tuple[str, ...]) -> str | None:
            for prop_id in ids:
                for kind, codec in (("001F", "utf-16-le"), ("001E", "cp1252")):
                    name = f"__substg1.0_{prop_id}{kind}"
                    if ole.exists(name) and ole.get_size(name) <= 64 * 1024:
                        return ole.openstream(name).read().decode(codec, "replace")
            return None

        found.text("title", prop(_MSG_STRINGS["title"]))
        sender, address = prop(_MSG_STRINGS["author"]), prop(_MSG_ADDRESS)
        if sender and address and "@" in address and address not in sender:
            sender = f"{sender.strip()} <{address.strip()}>"
        found.text("author", sender or address)
        if ole.exists("__properties_version1.0"):
            times = _msg_times(ole.openstream("__properties_version1.0").read(64 * 1024))
            found.date("created", times.get(_PR_CLIENT_SUBMIT_TIME)
                       or times.get(_PR_MESSAGE_DELIVERY_TIME))


def _msg_times(stream: bytes) -> dict[int, datetime]:
    """PT_SYSTIME properties of a top-level message's property stream (MS-OXMSG 2.4)."""
    times = {}
    for off in range(32, len(stream) - 15, 16):  # 32-byte header, then 16-byte entries
        kind, prop_id = struct.unpack_from("<HH", stream, off)
        if kind == _PT_SYSTIME:
            ticks = struct.unpack_from("<Q", stream, off + 8)[0]
            if ticks:
                times[prop_id] = datetime(1601, 1, 1, tzinfo=UTC) + timedelta(
                    microseconds=ticks // 10)
    return times


# --- OLE2 Office ---------------------------------------------------------------------------
def _read_ole_office(path: Path, found: _Found, *, has_pages: bool) -> None:
    import olefile

    with olefile.OleFileIO(str(path)) as ole:
        meta = ole.get_metadata()
    for key, attr in (("title", "title"), ("subject", "subject"), ("author", "author"),
                      ("keywords", "keywords"), ("description", "comments"),
                      ("creator", "creating_application")):
        found.text(key, getattr(meta, attr, None))
    found.date("created", meta.create_time)
    found.date("modified", meta.last_saved_time)
    if has_pages:  # a workbook's "pages" would be its print layout's, not a page count
        found.count("pages", meta.num_pages)


# --- HTML, RTF ---------------------------------------------------------------------------
class _HeadReader(HTMLParser):
    _META = {"author": "author", "description": "description", "keywords": "keywords",
             "generator": "creator"}

    def __init__(self, found: _Found) -> None:
        super().__init__(convert_charrefs=True)
        self.found, self.in_title, self.title = found, False, ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v or "" for k, v in attrs}
        if tag == "html":
            self.found.text("language", a.get("lang") or a.get("xml:lang"))
        elif tag == "title" and not self.title:
            self.in_title = True
        elif tag == "meta":
            key = self._META.get(a.get("name", "").lower())
            if key:
                self.found.text(key, a.get("content"))
            elif a.get("http-equiv", "").lower() == "content-language":
                self.found.text("language", a.get("content"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self.in_title:
            self.in_title = False
            self.found.text("title", " ".join(self.title.split()))

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data


def _read_html(path: Path, found: _Found) -> None:
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    body = re.search(rb"<body|</head", head, re.IGNORECASE)  # all the metadata is above
    reader = _HeadReader(found)
    reader.feed(head[:body.start() if body else None].decode("utf-8", "replace"))
    reader.close()


_RTF_INFO = re.compile(rb"\{\\(title|subject|author|keywords|doccomm)[ ]?((?:[^{}\\]|\\.)*)\}")
_RTF_TIME = re.compile(rb"\{\\(creatim|revtim)((?:\\[a-z]+\d+\s?)+)\}")
_RTF_HEX = re.compile(rb"\\'([0-9a-fA-F]{2})")


def _read_rtf(path: Path, found: _Found) -> None:
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    start = head.find(b"{\\info")
    if start == -1:
        return
    info = head[start:start + 64 * 1024]
    keys = {b"title": "title", b"subject": "subject", b"author": "author",
            b"keywords": "keywords", b"doccomm": "description"}
    for name, raw in _RTF_INFO.findall(info):
        value = _RTF_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), raw)
        value = re.sub(rb"\\([{}\\])", rb"\1", value)
        found.text(keys[name], value.decode("cp1252", "replace"))
    for name, raw in _RTF_TIME.findall(info):
        found.date("created" if name == b"creatim" else "modified", raw.decode("ascii"),
                   dates.rtf_date)


_DSC = re.compile(rb"^%%(Title|Creator|For|CreationDate|Pages):[ \t]*(.*?)\r?$", re.M)


def _read_ps(path: Path, found: _Found) -> None:
    """The DSC header comments (%%Title, %%Creator, %%For, %%CreationDate, %%Pages)."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    end = head.find(b"%%EndComments")
    for name, raw in _DSC.findall(head[:end] if end != -1 else head):
        value = raw.decode("latin-1").strip()
        if value.startswith("(") and value.endswith(")"):
            value = value[1:-1]  # DSC text may be a PostScript string
        if name == b"Pages":
            if value != "atend":  # "(atend)": the count is in the trailer, not read here
                found.count("pages", value)
        elif name == b"CreationDate":
            found.date("created", value, dates.pdf_date)  # ps2pdf/Ghostscript write PDF dates
        else:
            found.text({b"Title": "title", b"Creator": "creator", b"For": "author"}[name], value)


_READERS: dict[str, Callable[[Path, _Found], None]] = {
    "pdf": _read_pdf, "docx": _read_ooxml, "xlsx": _read_ooxml, "pptx": _read_ooxml,
    "odt": _read_odf, "ods": _read_odf, "epub": _read_epub, "eml": _read_eml,
    "msg": _read_msg,
    "doc": lambda path, found: _read_ole_office(path, found, has_pages=True),
    "xls": lambda path, found: _read_ole_office(path, found, has_pages=False),
    "html": _read_html, "htm": _read_html, "rtf": _read_rtf, "ps": _read_ps,
}
