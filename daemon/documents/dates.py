"""Dates as documents write them, turned into ISO 8601 UTC ("2019-05-01T10:20:30Z").

Each parser answers None for a value it cannot read exactly; the caller leaves the key
out (a wrong date is worse than none). A date that names no time zone is taken as UTC,
the only reading that does not invent an offset. Fractions of a second are dropped.
"""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime, timedelta, timezone

# PDF 32000-1 7.9.4: D:YYYYMMDDHHmmSSOHH'mm' with every part after the year optional.
_PDF_DATE = re.compile(
    r"(?:D:)?(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?"
    r"(?:(Z)(?:00'?(?:00'?)?)?|([+-])(\d{2})'?(?:(\d{2})'?)?)?")
# W3CDTF / ISO 8601 as OOXML, ODF and EPUB write them (ODF adds nanoseconds).
_ISO_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?)?)?)?"
    r"(?:(Z)|([+-])(\d{2}):?(\d{2})?)?")
_RTF_PART = re.compile(r"\\(yr|mo|dy|hr|min|sec)(\d+)")


def iso_utc(moment: datetime) -> str:
    """`moment` in UTC, to the second, with a Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pdf_date(raw: str) -> str | None:
    """A PDF date string (`D:20220403180542+02'00'`)."""
    match = _PDF_DATE.fullmatch(raw.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, zulu, sign, tz_h, tz_m = match.groups()
    return _build(year, month, day, hour, minute, second, zulu, sign, tz_h, tz_m)


def iso_date(raw: str) -> str | None:
    """A W3CDTF / ISO 8601 date (`2015-10-09T14:05:00Z`, `2014-08-25T19:49:39.53197`)."""
    match = _ISO_DATE.fullmatch(raw.strip())
    if not match:
        return None
    return _build(*match.groups())


def email_date(raw: str) -> str | None:
    """An RFC 5322 Date header (`Sat, 27 Mar 2010 12:11:32 +0000`)."""
    try:
        return iso_utc(email.utils.parsedate_to_datetime(raw.strip()))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def rtf_date(group: str) -> str | None:
    r"""An RTF \creatim / \revtim group body (`\yr2015\mo6\dy14\hr12\min49`)."""
    parts = dict(_RTF_PART.findall(group))
    if "yr" not in parts:
        return None
    return _build(parts["yr"], parts.get("mo"), parts.get("dy"), parts.get("hr"),
                  parts.get("min"), parts.get("sec"), None, None, None, None)


def _build(year: str, month: str | None, day: str | None, hour: str | None,
           minute: str | None, second: str | None, zulu: str | None, sign: str | None,
           tz_h: str | None, tz_m: str | None) -> str | None:
    try:
        offset = timedelta(hours=int(tz_h or 0), minutes=int(tz_m or 0))
        if offset >= timedelta(hours=24):
            return None
        zone = timezone(-offset if sign == "-" else offset) if sign else UTC
        moment = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0),
                          int(minute or 0), int(second or 0), tzinfo=zone)
    except (ValueError, OverflowError):
        return None
    if moment.year < 1000:  # year 0000 and friends: a writer's placeholder, not a date
        return None
    return iso_utc(moment)
