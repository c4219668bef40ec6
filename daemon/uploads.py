"""Reading an upload from the wire: streamed, counted, cut at MAX_CONTENT_LENGTH.

The body is read chunk by chunk into one buffer (the bytes that go to Redis), so it is
held in memory once; a body that passes the limit is refused before the rest is read,
whatever Content-Length claimed (honest, lying or absent).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import BodyPartReader, web

from daemon.config import Settings

CHUNK = 256 * 1024


class UploadError(Exception):
    """Raised when the request body cannot become an upload; carries the HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Upload:
    filename: str | None
    data: bytes


def _too_large(limit: int) -> UploadError:
    return UploadError(413, "payload_too_large", f"the upload is larger than {limit} bytes")


async def read_upload(request: web.Request, settings: Settings) -> Upload:
    """The document in the request: multipart field `file`, or the raw body."""
    limit = settings.max_content_length
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        # Honest and too large: refuse before reading a byte (multipart adds a little).
        raise _too_large(limit)
    try:
        async with asyncio.timeout(settings.upload_timeout):
            if request.content_type.startswith("multipart/"):
                return await _read_multipart(request, limit)
            data = await _read_stream(request.content.iter_chunked(CHUNK), limit)
            return Upload(request.query.get("filename"), data)
    except TimeoutError as exc:
        raise UploadError(408, "request_timeout",
                          f"the body did not arrive within {settings.upload_timeout:g} s") from exc


async def _read_multipart(request: web.Request, limit: int) -> Upload:
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name != "file":
                continue  # other fields are ignored, but still drained by the reader
            data = await _read_stream(_part_chunks(part), limit)
            return Upload(part.filename or request.query.get("filename"), data)
    except (ValueError, AssertionError) as exc:  # aiohttp's errors for malformed multipart
        raise UploadError(400, "bad_request", f"malformed multipart body: {exc}") from exc
    raise UploadError(400, "bad_request", "multipart body has no field named 'file'")


async def _part_chunks(part: BodyPartReader):
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


async def _read_stream(chunks, limit: int) -> bytes:
    buffer = bytearray()
    async for chunk in chunks:
        if len(buffer) + len(chunk) > limit:
            raise _too_large(limit)
        buffer += chunk
    if not buffer:
        raise UploadError(400, "bad_request", "the upload is empty")
    return bytes(buffer)
