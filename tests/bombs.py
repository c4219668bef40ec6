"""Hand-made hostile documents shared by the guard and the hostile-input tests."""

from __future__ import annotations

import struct
import zlib

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


def gif_frames(width: int, height: int, frames: list[tuple[int, int, int, int]] = (),
               colours: bool = True) -> bytes:
    """A GIF89a whose logical screen is width x height, holding `frames`, each given as
    (left, top, width, height) with a graphic control extension, a local colour table
    and one tiny LZW stream (clear code, one pixel, end code), as real encoders write."""
    packed = 0x80 if colours else 0  # a global colour table of 2 entries
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, packed, 0, 0))
    if colours:
        out += b"\x00\x00\x00\xff\xff\xff"
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # application extension
    for left, top, w, h in frames:
        out += b"\x21\xf9\x04\x00\x00\x00\x00\x00"  # graphic control extension
        out += b"\x2c" + struct.pack("<HHHHB", left, top, w, h, 0x80)
        out += b"\x00\x00\x00\xff\xff\xff"  # local colour table of 2 entries
        out += b"\x02\x02\x44\x01\x00"  # LZW min code size 2, one sub-block, terminator
    return bytes(out + b";")


def minimal_pdf(pages: int, title: str = "t", box: str = "0 0 10 10",
                count: str | None = None) -> bytes:
    """An uncompressed PDF with `pages` empty pages (its page objects are visible bytes)
    whose MediaBox, in points, is `box`, and whose page tree's /Count is `count` as
    written (the number of pages unless given)."""
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    bodies = ["<< /Type /Catalog /Pages 2 0 R >>",
              f"<< /Type /Pages /Kids [{kids}] /Count {count or pages} >>",
              *[f"<< /Type /Page /Parent 2 0 R /MediaBox [{box}] >>"] * pages,
              f"<< /Title ({title}) >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(bodies, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(bodies) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (f"trailer\n<< /Size {len(bodies) + 1} /Root 1 0 R /Info {len(bodies)} 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


def object_stream_pdf(pages: int, title: str = "t", header: bytes | None = None) -> bytes:
    """A PDF 1.5 with its catalog, page tree, pages and Info dictionary packed in one
    object stream, found through an xref stream (as pdfTeX writes them). `header`
    replaces the stream's list of object numbers and offsets, to damage it."""
    kids = " ".join(f"{4 + i} 0 R" for i in range(pages))
    packed = {2: "<< /Type /Catalog /Pages 3 0 R >>",
              3: f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>",
              **{4 + i: "<< /Type /Page /Parent 3 0 R /MediaBox [0 0 10 10] >>"
                 for i in range(pages)},
              4 + pages: f"<< /Title ({title}) /Producer (objstm) >>"}
    bodies, pairs = b"", []
    for number, body in packed.items():
        pairs.append(f"{number} {len(bodies)}")
        bodies += body.encode() + b"\n"
    listed = header if header is not None else " ".join(pairs).encode() + b"\n"
    data = listed + bodies
    out = bytearray(b"%PDF-1.5\n")
    stream_at = len(out)
    out += (f"1 0 obj\n<< /Type /ObjStm /N {len(packed)} /First {len(listed)} "
            f"/Length {len(data)} >>\nstream\n").encode() + data + b"\nendstream\nendobj\n"
    xref_number = 5 + pages
    xref_at = len(out)
    # /W [1 4 2]: type 1 (in the file, at an offset) or 2 (in object stream 1, index i)
    rows = [b"\x00" + (0).to_bytes(4, "big") + (65535).to_bytes(2, "big"),
            b"\x01" + stream_at.to_bytes(4, "big") + (0).to_bytes(2, "big"),
            *(b"\x02" + (1).to_bytes(4, "big") + i.to_bytes(2, "big")
              for i in range(len(packed))),
            b"\x01" + xref_at.to_bytes(4, "big") + (0).to_bytes(2, "big")]
    table = b"".join(rows)
    out += (f"{xref_number} 0 obj\n<< /Type /XRef /Size {xref_number + 1} /W [1 4 2] "
            f"/Root 2 0 R /Info {4 + pages} 0 R /Length {len(table)} >>\nstream\n"
            ).encode() + table + b"\nendstream\nendobj\n"
    out += f"startxref\n{xref_at}\n%%EOF\n".encode()
    return bytes(out)


def with_broken_xref(pdf: bytes) -> bytes:
    """`pdf` whose startxref points nowhere: pdfminer (without its fallback scan) cannot
    open it; poppler rebuilds an xref table (not an xref stream) and reads it."""
    start = pdf.rindex(b"startxref")
    return pdf[:start] + b"startxref\n1\n%%EOF\n"


def info_loop_pdf() -> bytes:
    """A one-page PDF whose /Info is `4 0 obj 4 0 R endobj`, with a correct xref table."""
    bodies = [b"<< /Type /Catalog /Pages 2 0 R >>",
              b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
              b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>", b"4 0 R"]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(bodies, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 5\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o
                                                        for o in offsets)
    return out + b"trailer\n<< /Size 5 /Root 1 0 R /Info 4 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref


def drawing_pdf(*contents: bytes, layers: int = 1) -> bytes:
    """A one-page PDF whose /Contents are `contents`, each Flate-compressed `layers` times
    (filters chain: each layer multiplies the ratio)."""
    streams = []
    for content in contents:
        data = content
        for _ in range(layers):
            data = zlib.compress(data, 9)
        filters = b" ".join([b"/FlateDecode"] * layers)
        streams.append(b"<< /Length %d /Filter [%s] >>\nstream\n%s\nendstream"
                       % (len(data), filters, data))
    refs = b" ".join(b"%d 0 R" % (4 + i) for i in range(len(contents)))
    bodies = [b"<< /Type /Catalog /Pages 2 0 R >>",
              b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
              b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents [%s] >>" % refs,
              *streams]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(bodies, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(bodies) + 1, xref)
    return bytes(out)
