"""What the metadata readers found: clean values, and the keys they had to leave out."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from daemon.documents import dates

MAX_VALUE_CHARS = 1000  # a title is a line, not a document: longer values are cut
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class MetadataUnreadable(ValueError):
    """Raised by a reader when its source cannot be read; the message is ours, not the
    document's (it goes to logs)."""


class Found:
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
