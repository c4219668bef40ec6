"""Reading an upload from the wire: streamed, counted, cut at MAX_CONTENT_LENGTH, paced.

Each file is read chunk by chunk into a buffer of its own (the bytes that go to Redis), so
it is held in memory once; a body (all its files together: a batch is one body) that
passes the limit is refused before the rest is read,
whatever Content-Length claimed (honest, lying or absent). Its memory is reserved from
the budget as it arrives (daemon.api.budget), and a body that arrives slower than
UPLOAD_MIN_RATE_KB is cut early with 408, so a stalled socket holds neither memory nor
its key's upload slot for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import content_disposition_filename

from daemon.api.budget import MemoryBudget, Reservation
from daemon.api.disposition import parse_content_disposition
from daemon.api.middleware import ApiError, ClientDisconnected
from daemon.config import Settings

CHUNK = 256 * 1024
# A body declared this small is held without a reservation: aiohttp buffers about as
# much for any open connection anyway, and so no upload of any size, stalled or not,
# can make a small one wait for memory.
SMALL_BODY = 64 * 1024


# Small form fields read beside the files, and the most bytes each may have (a field's
# own rules, such as callback_url's 2048 bytes, are judged by its reader).
FORM_FIELDS = {"callback_url": 8192}
BATCH_ROUTE = "/v1/batches"


@dataclass(frozen=True)
class Upload:
    filename: str | None
    data: bytearray  # not copied to bytes: redis-py sends a bytearray as it is


@dataclass(frozen=True)
class Received:
    """What one request carried: its documents, in order, and its small form fields."""

    files: list[Upload]
    fields: dict[str, str]


def reservation(request: web.Request, settings: Settings) -> int:
    """The most an upload may come to: its declared length, or the limit without one.

    An upload that declares more than the limit is refused here, before a byte is read.
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


class Body:
    """One body as it arrives: its bytes reserved from the budget, its pace judged.

    The pace: every UPLOAD_RATE_WINDOW seconds (the first is the grace period) at least
    UPLOAD_MIN_RATE_KB x the window must have come, or the body ends first. Judged by a
    timer that only ever fires on a body that failed it, so no read is cut and resumed.
    Time spent waiting for memory is the server's, not the client's: it does not count.
    """

    def __init__(self, budget: MemoryBudget, share: Reservation | None,
                 timer: asyncio.Timeout, settings: Settings) -> None:
        self.budget = budget
        self.share = share
        self.timer = timer
        self.quota = settings.upload_min_rate_kb * 1024 * settings.upload_rate_window
        self.window = settings.upload_rate_window
        self.waiting_for_memory = False
        self._loop = asyncio.get_running_loop()
        self._since_mark = 0
        self._deadline = self._loop.time() + self.window
        if self.quota > 0:
            timer.reschedule(self._deadline)

    def arrived(self, size: int) -> None:
        if self.quota <= 0:
            return
        self._since_mark += size
        if self._since_mark >= self.quota:  # this window's due is in: the next one starts
            self._since_mark = 0
            self._deadline = self._loop.time() + self.window
            self.timer.reschedule(self._deadline)

    async def hold(self, size: int) -> None:
        """Reserve `size` bytes just read, waiting for memory if need be."""
        if self.share is None:
            return
        self.waiting_for_memory = True
        paused = self._loop.time()
        self.timer.reschedule(None)
        try:
            await self.budget.grow(self.share, size)
        finally:
            self.waiting_for_memory = False
            self._deadline += self._loop.time() - paused
            if self.quota > 0:
                self.timer.reschedule(self._deadline)


async def read_upload(request: web.Request, settings: Settings, budget: MemoryBudget,
                      share: Reservation | None, max_files: int = 1, *,
                      field: str | None = "file") -> Received:
    """The documents in the request: multipart fields `field` (None: file parts whatever
    their name, as Tika takes them), or the raw body (one).

    Call `reservation` first: it refuses a body that declares itself too large. `share`
    (from budget.open) is what the body's bytes are reserved under; None: a small body.
    All the files together are bounded by MAX_CONTENT_LENGTH, and their bytes held under
    the one share. A body with more than `max_files` files is refused as it arrives: with
    max_files=1 (POST /v1/jobs) a second one is a 400 naming the batch route, so it is
    never silently dropped. A part may be empty: the caller judges each part."""
    limit = settings.max_content_length
    body: Body | None = None
    try:
        async with asyncio.timeout(settings.upload_timeout), \
                asyncio.timeout(None) as pace:
            body = Body(budget, share, pace, settings)
            if request.content_type.startswith("multipart/"):
                return await _read_multipart(request, limit, body, max_files, field)
            data = await _read_stream(lambda: request.content.read(CHUNK), limit, body)
            if not data:
                raise ApiError("bad_request", "the upload is empty")
            return Received([Upload(request.query.get("filename"), data)], {})
    except TimeoutError as exc:
        if body is not None and body.waiting_for_memory:
            raise ApiError("server_busy", "too many large uploads in progress",
                           retry_after=2) from exc
        if body is not None and body.timer.expired():
            raise ApiError("request_timeout", "the body arrived slower than "
                           f"{settings.upload_min_rate_kb} KiB/s") from exc
        raise ApiError("request_timeout",
                       f"the body did not arrive within {settings.upload_timeout:g} s") from exc
    except ConnectionResetError as exc:
        # aiohttp's "Connection lost": the client hung up mid-body. An OSError, so it
        # would otherwise be taken for Redis going away.
        raise ClientDisconnected(str(exc)) from exc


async def _read_multipart(request: web.Request, limit: int, body: Body,
                          max_files: int, field: str | None) -> Received:
    files: list[Upload] = []
    fields: dict[str, str] = {}
    used = 0  # bytes of every part so far: the limit is the whole body's
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):  # a multipart inside the multipart
                raise ApiError("bad_request", "a nested multipart body is not supported: "
                               "send each file as a part of its own")
            name, filename = _disposition(part)
            if name == field or (field is None and name not in FORM_FIELDS):
                if len(files) == max_files:
                    raise _too_many_files(max_files)
                data = await _read_stream(partial(part.read_chunk, CHUNK), limit - used, body)
                used += len(data)
                files.append(Upload(filename or request.query.get("filename"), data))
            elif name in FORM_FIELDS:
                value = await _read_stream(partial(part.read_chunk, CHUNK),
                                           min(limit - used, FORM_FIELDS[name]), body,
                                           what=f"field {name!r}")
                used += len(value)
                fields[name] = value.decode("utf-8", "replace")
            else:
                while chunk := await part.read_chunk(CHUNK):
                    body.arrived(len(chunk))  # paced, never held: it is dropped at once
                    used += len(chunk)
                    if used > limit:
                        raise _too_large(limit)
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        # aiohttp's errors for a malformed multipart body or part header
        raise ApiError("bad_request", f"malformed multipart body: {exc}") from exc
    if not files:
        raise ApiError("bad_request", f"multipart body has no field named {field!r}" if field
                       else "multipart body has no part")
    if max_files == 1 and not files[0].data:
        raise ApiError("bad_request", "the upload is empty")
    return Received(files, fields)


def _too_many_files(max_files: int) -> ApiError:
    if max_files == 1:
        return ApiError("bad_request", "one file per request here: send several `file` "
                        f"parts to POST {BATCH_ROUTE}")
    return ApiError("too_many_files", f"a batch holds at most {max_files} files "
                    "(BATCH_MAX_FILES)")


def _disposition(part: BodyPartReader | MultipartReader) -> tuple[str | None, str | None]:
    """The part's field name and file name, from one parse of Content-Disposition.

    aiohttp's `.name` and `.filename` parse the header once each: a tenth of the api's
    CPU on a tiny upload, half of it for nothing."""
    _, params = parse_content_disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
    return (content_disposition_filename(params, "name"),
            content_disposition_filename(params, "filename"))


async def _read_stream(read: Callable[[], Awaitable[bytes]], limit: int,
                       body: Body, what: str = "") -> bytearray:
    buffer = bytearray()
    while chunk := await read():
        body.arrived(len(chunk))
        if len(buffer) + len(chunk) > limit:
            if what:
                raise ApiError("bad_request", f"{what} is longer than {limit} bytes")
            raise _too_large(limit)
        await body.hold(len(chunk))
        buffer += chunk
    return buffer
