"""Hand-made hostile documents shared by the guard and the hostile-input tests."""

from __future__ import annotations

import struct

# "Billion laughs": nine levels of ten-fold entity expansion in a few hundred bytes.
LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
          + b"".join(b' <!ENTITY lol%d "%s">\n' % (i, b"&lol%d;" % (i - 1) * 10)
                     for i in range(1, 10)).replace(b"&lol0;", b"&lol;")
          + b"]>\n<lolz>&lol9;</lolz>\n")


def png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height; no pixel data is needed to read it."""
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
            + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0) + b"\0\0\0\0"
            + b"\0\0\0\0IEND\xaeB`\x82")
