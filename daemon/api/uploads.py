"""Reading an upload from the wire: streamed, counted, cut at MAX_CONTENT_LENGTH.

The body is read chunk by chunk into one buffer (the bytes that go to Redis), so it is
held in memory once; a body that passes the limit is refused before the rest is read,
whatever Content-Length claimed (honest, lying or absent). A memory budget shared by all
requests bounds how many bodies are held at once, weighted by size, so many large
uploads queue for memory while small ones and slow trickles do not block each other.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

from daemon.api.middleware import ApiError, ClientDisconnected
from daemon.config import Settings

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Upload:
    filename: str | None
    data: bytearray  # not copied to bytes: redis-py sends a bytearray as it is


class MemoryBudget:
    """Bytes of upload bodies this process may hold at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = asyncio.Condition()

    async def reserve(self, size: int) -> None:
        async with self._changed:
            # An upload larger than the whole budget may still go, alone.
            await self._changed.wait_for(lambda: self.used == 0
                                         or self.used + size <= self.limit)
            self.used += size

    async def release(self, size: int) -> None:
        async with self._changed:
            self.used -= size
            self._changed.notify_all()


def reservation(request: web.Request, settings: Settings) -> int:
    """What an upload may cost: its declared length, or the limit when it declares none.

    Reserved up front, whole: reserving chunk by chunk would let many half-read uploads
    share the budget out and all wait for more. An upload that declares more than the
    limit is refused here, before it could wait for memory it will never use.
    """
    declared = request.content_length
    limit = settings.max_content_length
    if declared is not None and declared > limit + 64 * 1024:
        # Honest and too large: refuse before reading a byte (multipart adds a little).
        raise _too_large(limit)
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        return limit  # a compressed body inflates: its length says nothing of its cost
    return min(declared, limit) if declared is not None else limit


def _too_large(limit: int) -> ApiError:
    return ApiError("payload_too_large", f"the upload is larger than {limit} bytes")


async def read_upload(request: web.Request, settings: Settings) -> Upload:
    """The document in the request: multipart field `file`, or the raw body.

    Call `reservation` first: it refuses a body that declares itself too large."""
    limit = settings.max_content_length
    try:
        async with asyncio.timeout(settings.upload_timeout):
            if request.content_type.startswith("multipart/"):
                return await _read_multipart(request, limit)
            data = await _read_stream(request.content.iter_chunked(CHUNK), limit)
            return Upload(request.query.get("filename"), data)
    except TimeoutError as exc:
        raise ApiError("request_timeout",
                       f"the body did not arrive within {settings.upload_timeout:g} s") from exc
    except ConnectionResetError as exc:
        # aiohttp's "Connection lost": the client hung up mid-body. An OSError, so it
        # would otherwise be taken for Redis going away.
        raise ClientDisconnected(str(exc)) from exc


async def _read_multipart(request: web.Request, limit: int) -> Upload:
    skipped = 0  # bytes of other fields: they count against the limit too
    try:
        reader = await request.multipart()
        async for part in reader:
            name, filename = _disposition(part)
            if not isinstance(part, BodyPartReader) or name != "file":
                async for chunk in _part_chunks(part):
                    skipped += len(chunk)
                    if skipped > limit:
                        raise _too_large(limit)
                continue
            data = await _read_stream(_part_chunks(part), limit - skipped)
            return Upload(filename or request.query.get("filename"), data)
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        # aiohttp's errors for a malformed multipart body or part header
        raise ApiError("bad_request", f"malformed multipart body: {exc}") from exc
    raise ApiError("bad_request", "multipart body has no field named 'file'")


def _disposition(part: BodyPartReader | MultipartReader) -> tuple[str | None, str | None]:
    """The part's field name and file name, from one parse of Content-Disposition.

    aiohttp's `.name` and `.filename` parse the header once each: a tenth of the api's
    CPU on a tiny upload, half of it for nothing."""
    _, params = parse_content_disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
    return (content_disposition_filename(params, "name"),
            content_disposition_filename(params, "filename"))


async def _part_chunks(part: BodyPartReader):
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


async def _read_stream(chunks, limit: int) -> bytearray:
    buffer = bytearray()
    async for chunk in chunks:
        if len(buffer) + len(chunk) > limit:
            raise _too_large(limit)
        buffer += chunk
    if not buffer:
        raise ApiError("bad_request", "the upload is empty")
    return buffer
