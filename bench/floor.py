"""The HTTP floor: what a tiny upload costs with nothing behind the socket.

A bare aiohttp app on uvloop, as the api runs, reads each multipart upload and answers a
job-shaped JSON at once: no Redis, no queue, no worker, no textract, no log line. The
benchmark drives it with its own client and the tiny requests, so its CPU per job (app
plus client) is what any service with this front pays before it does anything. Added to
the ceiling's CPU per job, it bounds the tiny ratio a service of this shape could reach
on the machine.

    python -m bench.floor PORT
"""

from __future__ import annotations

import sys

import orjson
import uvloop
from aiohttp import BodyPartReader, web


async def _answer(request: web.Request) -> web.Response:
    reader = await request.multipart()
    part = await reader.next()
    data = await part.read() if isinstance(part, BodyPartReader) else b""
    job = {"id": "floor", "state": "done", "chars": len(data),
           "text": data.decode("utf-8", "replace")}
    return web.Response(body=orjson.dumps(job), content_type="application/json")


def app() -> web.Application:
    application = web.Application()
    application.router.add_post("/v1/jobs", _answer)
    application.router.add_get("/health", _ok)
    return application


async def _ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main(argv: list[str] | None = None) -> None:
    port = int((argv or sys.argv[1:])[0])
    web.run_app(app(), host="127.0.0.1", port=port, print=None, access_log=None,
                loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
