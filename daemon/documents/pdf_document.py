"""pdfminer's PDFDocument, reading an object out of an object stream by its offset.

PDF 1.5 writers (pdfTeX, Ghostscript, most since) pack the catalog, the page tree and
the Info dictionary into object streams. To return one object of such a stream,
pdfminer parses every object the stream holds with its Python tokenizer: the corpus's
pdflatex-outline.pdf spent 4.2 ms of its 4.3 ms catalog read there, as long as half of
pdftotext's whole run. The stream's header lists each object's offset (PDF 32000-1
7.5.7), which is where poppler reads an object: parsing the header's integers and the
one object at its offset gives the same object for a well-formed stream. A stream whose
header cannot be read that way, or does not list the object asked for at its index, is
parsed whole, by pdfminer, as before.

Imported when a PDF's catalog is read (pdf_catalog.read_catalog), with pdfminer.
"""

from __future__ import annotations

from typing import Any

from pdfminer.pdfdocument import PDFDocument
from pdfminer.pdfparser import PDFStreamParser
from pdfminer.pdftypes import PDFStream

# A stream's decoded data, the object numbers its header lists, where each object starts.
_Starts = tuple[bytes, list[int], list[int]]


class OffsetReadDocument(PDFDocument):
    """A PDFDocument whose objects in object streams are read one at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set first: PDFDocument reads the catalog while it is constructed.
        self._stream_starts: dict[int | None, _Starts | None] = {}
        super().__init__(*args, **kwargs)

    def _getobj_objstm(self, stream: PDFStream, index: int, objid: int) -> object:
        found = self._starts(stream)
        if found is None or not 0 <= index < len(found[2]) or found[1][index] != objid:
            return super()._getobj_objstm(stream, index, objid)  # pdfminer's whole parse
        data, _, starts = found
        parser = PDFStreamParser(data)
        parser.set_document(self)
        parser.seek(starts[index])
        return parser.nextobject()[1]

    def _starts(self, stream: PDFStream) -> _Starts | None:
        """The stream's decoded data, the object numbers its header lists and where in
        the data each object starts; None when the header is not N pairs of integers with
        offsets inside the data. Read once per stream: the catalog, the page tree and the
        Info dictionary often share one."""
        if stream.objid not in self._stream_starts:
            self._stream_starts[stream.objid] = _object_starts(stream)
        return self._stream_starts[stream.objid]


def _object_starts(stream: PDFStream) -> _Starts | None:
    count, first = stream.get("N"), stream.get("First")
    if type(count) is not int or type(first) is not int or first < 0:
        return None
    data = stream.get_data()
    try:
        numbers = [int(token) for token in data[:first].split()[:2 * count]]
    except ValueError:
        return None
    starts = [first + offset for offset in numbers[1::2]]
    if len(numbers) != 2 * count or not all(first <= at < len(data) for at in starts):
        return None
    return data, numbers[0::2], starts
