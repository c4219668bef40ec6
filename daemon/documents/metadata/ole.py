"""Metadata of OLE2 compound files: Outlook .msg properties, Word/Excel SummaryInformation.

olefile is a textract dependency (and ours, for detection): only the property streams
are read, never the document body.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import olefile

from daemon.documents.metadata.values import Found

# MAPI property ids (MS-OXPROPS) read from a .msg's top-level streams: subject; sender
# name, then sent-representing name; sender SMTP address, email address, sender email.
_MSG_STRINGS = {"title": ("0037",), "author": ("0C1A", "0042")}
_MSG_ADDRESS = ("5D01", "0C1F", "0065")
_PR_CLIENT_SUBMIT_TIME, _PR_MESSAGE_DELIVERY_TIME, _PT_SYSTIME = 0x0039, 0x0E06, 0x0040


def read_msg(path: Path, found: Found, container: olefile.OleFileIO | None = None) -> None:
    """Subject, sender and submit time of an Outlook message (extract_msg would parse the
    whole message, attachments included, to answer the same). `container`: the message's
    compound file as the extraction parsed it (documents/outlook.py)."""
    with _opened(path, container) as ole:
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


def read_ole_office(path: Path, found: Found, *, has_pages: bool) -> None:
    """A Word 97-2003 or Excel 97-2003 file's SummaryInformation stream."""
    with _opened(path) as ole:
        meta = ole.get_metadata()
    for key, attr in (("title", "title"), ("subject", "subject"), ("author", "author"),
                      ("keywords", "keywords"), ("description", "comments"),
                      ("creator", "creating_application")):
        found.text(key, getattr(meta, attr, None))
    found.date("created", meta.create_time)
    found.date("modified", meta.last_saved_time)
    if has_pages:  # a workbook's "pages" would be its print layout's, not a page count
        found.count("pages", meta.num_pages)


@contextlib.contextmanager
def _opened(path: Path, container: olefile.OleFileIO | None = None
            ) -> Iterator[olefile.OleFileIO]:
    """`container` when the extraction parsed the file already, left open; else the file
    at `path`, closed after."""
    if container is not None:
        yield container
        return
    # An open file, not a path: given a path, olefile records the caller's stack on every
    # open (traceback.extract_stack, for a warning if it is never closed).
    with open(path, "rb") as f, olefile.OleFileIO(f) as ole:
        yield ole
