"""The work of `textractd extract`: N documents in flight, each written once it is final.

One asyncio loop, `concurrency` tasks taking inputs in order. A document ends as a line
of the manifest and, when done, its text file (written first, so a `done` line always
means the file is there). Ctrl-C cancels the tasks between two awaits: a text is written
and renamed, and a manifest line written, with no await in between, so neither is ever
cut. A refused key or an unreachable service stops everything (exit 2): its documents
are not marked failed, a later run (--resume) takes them up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from daemon.cli.extract import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from daemon.cli.extraction.inputs import STDIN, Input, UsageError, collect
from daemon.cli.extraction.outputs import (
    Manifest,
    check_distinct,
    output_path,
    sha256_file,
    write_atomically,
)
from daemon.cli.extraction.progress import Display, Tally, display_for, summary
from daemon.client import AsyncClient, AuthenticationFailed, ClientError, ConnectionFailed
from daemon.client.retry import RetryNotice
from daemon.client.sources import Source

FATAL = (AuthenticationFailed, ConnectionFailed)
OUTAGE_GRACE = 60.0  # seconds a lost service is waited for once the run has begun


@dataclass(frozen=True)
class Options:
    paths: list[str]
    output: Path | None
    jsonl: Path | None
    no_text: bool
    resume: bool
    include: list[str]
    exclude: list[str]
    concurrency: int
    method: str | None
    filename: str | None
    url: str | None
    key: str | None
    timeout: float | None
    max_backoff: float
    quiet: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        return cls(**{name: getattr(args, name) for name in cls.__dataclass_fields__})


def extract_all(options: Options) -> int:
    stdin = sys.stdin.buffer.read() if STDIN in options.paths else None
    ours = [p for p in (options.output, options.jsonl) if p is not None]
    items = collect(options.paths, options.include, options.exclude, len(stdin or b""), ours)
    if not items:
        raise UsageError("no documents: the folders given hold no file that the "
                         "--include/--exclude globs keep")
    outputs = {item: None if options.no_text else output_path(item, options.output)
               for item in items}
    check_distinct(outputs)
    return asyncio.run(Run(options, items, outputs, stdin).main())


class Run:
    def __init__(self, options: Options, items: list[Input],
                 outputs: dict[Input, Path | None], stdin: bytes | None) -> None:
        self.options = options
        self.items = items
        self.outputs = outputs
        self.stdin = stdin
        self.tally = Tally(len(items), sum(item.size for item in items))
        self.display: Display | None = None
        self.manifest: Manifest | None = None
        self.fatal: ClientError | None = None
        self.interrupted = False

    async def main(self) -> int:
        options = self.options
        client = AsyncClient(options.url, options.key, retries=None,
                             max_backoff=options.max_backoff, on_retry=self._backed_off)
        try:
            if (problem := await _unreachable(client)) is not None:
                print(f"textractd extract: {problem}", file=sys.stderr)
                return EXIT_USAGE
            if options.jsonl is not None:
                self.manifest = Manifest(options.jsonl, options.resume)
            self.display = display_for(self.tally, quiet=options.quiet)
            await self._work(client)
        finally:
            if self.display is not None:
                self.display.close()
            if self.manifest is not None:
                self.manifest.close()
            await client.aclose()
        if self.fatal is not None:
            print(f"textractd extract: stopped: {self.fatal}", file=sys.stderr)
            return EXIT_USAGE
        print(summary(self.tally, self.interrupted), file=sys.stderr)
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.tally.failures else EXIT_OK

    async def _work(self, client: AsyncClient) -> None:
        queue = deque(self.items)
        tasks: list[asyncio.Task[None]] = []

        async def worker() -> None:
            while queue:
                item = queue.popleft()
                try:
                    await self._one(client, item)
                except FATAL as error:
                    self.fatal = error
                    stop()

        def stop() -> None:
            for task in tasks:
                task.cancel()

        def interrupt() -> None:
            self.interrupted = True
            stop()

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, interrupt)
        loop.add_signal_handler(signal.SIGTERM, interrupt)
        try:
            tasks.extend(asyncio.create_task(worker())
                         for _ in range(min(self.options.concurrency, len(self.items))))
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)

    async def _one(self, client: AsyncClient, item: Input) -> None:
        options = self.options
        key = STDIN if item.path is None else str(item.path.resolve())
        source: Source
        if item.path is None:
            assert self.stdin is not None
            source = self.stdin
        else:
            source = item.path
        to_stdout = item.path is None and self.outputs[item] is None and not options.no_text
        # The input's hash is for the manifest (and --resume); without one the file is not
        # read a second time (a tenth of the command's CPU on the corpus).
        sha256: str | None = None
        if self.manifest is not None:
            sha256 = await self._sha256(item)
            if not to_stdout and self.manifest.already_done(key, sha256, self.outputs[item]):
                self.tally.skipped += 1
                self._count(item, {"skipped": True, "state": "done"})
                return
        try:
            job = await self._extract(client, item, source)
        except FATAL:
            raise
        except ClientError as error:  # refused before a job existed: 400, 413, 415, ...
            job = _refused(item, error.code, error.message)
        except TimeoutError as error:
            job = _refused(item, "client_timeout", str(error))
        text = job.pop("text", None)
        output = self.outputs[item]
        done = job["state"] == "done"
        # From here to the end no await: an interrupt cannot come between the text file
        # and its manifest line.
        if done and output is not None:
            write_atomically(output, text or "")
        elif done and item.path is None and not options.no_text:
            sys.stdout.write(text or "")
            sys.stdout.flush()
        record = {"key": key, "input": item.shown,
                  "output": str(output) if done and output is not None else None,
                  "sha256": sha256, **job}
        # The page count at the top, from the metadata (null for formats without pages).
        record.setdefault("pages", (job.get("metadata") or {}).get("pages"))
        if options.no_text and done:
            record["text"] = text
        if self.manifest is not None:
            self.manifest.write(record)
        self._count(item, record)

    async def _sha256(self, item: Input) -> str:
        if item.path is None:
            assert self.stdin is not None
            return hashlib.sha256(self.stdin).hexdigest()
        return await asyncio.to_thread(sha256_file, item.path)

    async def _extract(self, client: AsyncClient, item: Input, source: Source) -> dict:
        """The final job of one document. A lost connection (the api restarting) is
        waited out for OUTAGE_GRACE seconds before it stops the run: the upload is sent
        again, which at worst extracts the document twice, never loses it."""
        options = self.options
        lost_since: float | None = None
        attempt = 0
        while True:
            try:
                return await client.extract_job(
                    source, filename=options.filename if item.path is None else None,
                    method=options.method, timeout=options.timeout)
            except ConnectionFailed as error:
                now = time.monotonic()
                lost_since = lost_since or now
                if now - lost_since > OUTAGE_GRACE:
                    raise
                delay = min(2.0 ** attempt * 0.25, options.max_backoff, 5.0)
                attempt += 1
                self.tally.retries += 1
                if self.display is not None:
                    self.display.backed_off(f"back-off: {error.message}; trying again in "
                                            f"{delay:.1f} s", self.tally)
                await asyncio.sleep(delay)

    def _count(self, item: Input, record: dict) -> None:
        tally = self.tally
        tally.done += 1
        tally.bytes += item.size
        if record["state"] != "done":
            error = record.get("error") or {}
            tally.failures.append((item.shown, str(error.get("code")),
                                   str(error.get("message") or "")))
        if self.display is not None:
            self.display.finished(item.shown, record, tally)

    def _backed_off(self, notice: RetryNotice) -> None:
        self.tally.retries += 1
        if self.display is not None:
            self.display.backed_off(
                f"back-off: {notice.code} ({notice.status}), Retry-After "
                f"{notice.retry_after}; trying again in {notice.delay:.1f} s", self.tally)


def _refused(item: Input, code: str, message: str) -> dict:
    """A failed document's record when the service refused it before making a job."""
    return {"id": None, "state": "failed", "filename": None if item.path is None
            else item.path.name, "bytes": item.size,
            "error": {"code": code, "message": message}}


async def _unreachable(client: AsyncClient) -> str | None:
    """Why the service cannot be used at all, or None: checked once before any work."""
    import httpx

    with contextlib.suppress(httpx.TransportError):
        reply = await client.http.get("/health", timeout=10)
        return None if reply.status_code == 200 else (
            f"{client.url}/health answered {reply.status_code}")
    return f"cannot reach the service at {client.url}"
