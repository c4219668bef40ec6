"""The shape's floor: the least a service of textractd's fixed shape can do per job.

The shape is the issue's, not ours to change: an aiohttp front writes each job to a Redis
stream, plain worker processes read it through a consumer group, acknowledge it and
answer through Redis, and the front replies. This app is that and nothing more: on
uvloop, hiredis on both sides, one XADD per upload, one pipelined round trip per job in
the worker (result, XACK, PUBLISH and the next XREADGROUP together), one done-channel
subscription for all the waiting requests; no guard, no limit, no auth, no log line, no
job record, no retry bookkeeping, and "extraction" is a UTF-8 decode, cheaper than
textract's. So its CPU per tiny job bounds from below what any service of this shape can
spend on this machine, and its jobs/s from above what it can reach.

    python -m bench.shape_floor PORT REDIS_SOCKET WORKERS
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys

import orjson
import redis
import redis.asyncio
import uvloop
from aiohttp import BodyPartReader, web

STREAM = "shape:jobs"
GROUP = "shape"
DONE = "shape:done"
RESULTS = "shape:result:"


def _work(socket: str, name: str) -> None:
    """One worker: take a job, decode it, answer it; the answer and the next take are
    one round trip."""
    client = redis.Redis(unix_socket_path=socket)
    pipe = client.pipeline(transaction=False)
    pipe.xreadgroup(GROUP, name, {STREAM: ">"}, count=1, block=0)
    while True:
        *_, taken = pipe.execute()
        for entry_id, fields in taken[0][1]:
            job_id = fields[b"id"]
            answer = orjson.dumps({"id": job_id.decode(), "state": "done",
                                   "text": fields[b"data"].decode("utf-8", "replace")})
            pipe.set(RESULTS + job_id.decode(), answer, ex=60)
            pipe.xack(STREAM, GROUP, entry_id)
            pipe.publish(DONE, answer)
        pipe.xreadgroup(GROUP, name, {STREAM: ">"}, count=1, block=0)


class Front:
    """The aiohttp side: XADD, then wait on the shared subscription."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self.waiting: dict[str, asyncio.Future[bytes]] = {}
        self.count = 0

    async def start(self, _app: web.Application) -> None:
        self.client = redis.asyncio.Redis(unix_socket_path=self.socket)
        self.pubsub = self.client.pubsub()
        await self.pubsub.subscribe(DONE)
        self.listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] != "message":
                continue
            answer = message["data"]
            future = self.waiting.pop(orjson.loads(answer)["id"], None)
            if future is not None and not future.done():
                future.set_result(answer)

    async def answer(self, request: web.Request) -> web.Response:
        reader = await request.multipart()
        part = await reader.next()
        data = await part.read() if isinstance(part, BodyPartReader) else b""
        self.count += 1
        job_id = f"j{self.count}"
        future = asyncio.get_running_loop().create_future()
        self.waiting[job_id] = future
        await self.client.xadd(STREAM, {"id": job_id, "data": data})
        return web.Response(body=await future, content_type="application/json")


async def _ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main(argv: list[str] | None = None) -> None:
    port, socket, workers = (argv or sys.argv[1:])[:3]
    setup = redis.Redis(unix_socket_path=socket)
    setup.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    setup.close()
    for n in range(int(workers)):
        multiprocessing.Process(target=_work, args=(socket, f"w{n}"), daemon=True).start()
    front = Front(socket)
    application = web.Application()
    application.on_startup.append(front.start)
    application.router.add_post("/v1/jobs", front.answer)
    application.router.add_get("/health", _ok)
    web.run_app(application, host="127.0.0.1", port=int(port), print=None,
                access_log=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
