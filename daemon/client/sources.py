"""What an upload is made of: a path, bytes or an open binary file, sent as a raw body.

The body is streamed, never read whole: a path is opened for each attempt and httpx
reads it in 64 KiB chunks with its size as Content-Length; an open file is rewound for a
retry when it can be (a pipe cannot: it is sent once, without retries). Bytes are sent
as they are, not copied.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

Source = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO
CHUNK = 64 * 1024


@dataclass
class Upload:
    filename: str | None
    data: bytes | bytearray | memoryview | None = None
    path: Path | None = None
    stream: BinaryIO | None = None
    start: int | None = None  # where a seekable stream began, to rewind it for a retry

    @property
    def replayable(self) -> bool:
        return self.stream is None or self.start is not None

    @contextlib.contextmanager
    def opened(self) -> Iterator[bytes | bytearray | memoryview | BinaryIO]:
        """The body of one attempt: the bytes, a fresh handle on the path, or the
        stream put back where it began."""
        if self.data is not None:
            yield self.data
        elif self.path is not None:
            with open(self.path, "rb") as f:
                yield f
        else:
            assert self.stream is not None
            if self.start is not None:
                self.stream.seek(self.start)
            yield self.stream

    def size(self, body: bytes | bytearray | memoryview | BinaryIO) -> int | None:
        if isinstance(body, bytes | bytearray | memoryview):
            return len(body)
        try:
            return os.fstat(body.fileno()).st_size - (self.start or 0)
        except (OSError, AttributeError, ValueError):
            return None


def upload_of(source: Source, filename: str | None = None) -> Upload:
    """An Upload for `source`; `filename` overrides the name taken from a path or file."""
    if isinstance(source, bytes | bytearray | memoryview):
        return Upload(filename, data=source)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        return Upload(filename or path.name, path=path)
    name = getattr(source, "name", None)
    if filename is None and isinstance(name, str) and not name.startswith("<"):
        filename = os.path.basename(name)
    try:
        start = source.tell() if source.seekable() else None
    except (OSError, AttributeError, ValueError):
        start = None
    return Upload(filename, stream=source, start=start)


async def chunks(body: bytes | bytearray | memoryview | BinaryIO) -> AsyncIterator[bytes]:
    """The body for httpx's AsyncClient, which takes no sync file: read in CHUNK pieces."""
    if isinstance(body, bytes | bytearray | memoryview):
        yield bytes(body) if not isinstance(body, bytes) else body
        return
    while chunk := body.read(CHUNK):
        yield chunk
