"""The asyncio client: `await AsyncClient().extract("report.pdf")` returns the text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import httpx

from daemon.client.base import POLL, Base, is_final, raise_unless_retry
from daemon.client.errors import ClientError
from daemon.client.sources import Source, chunks, upload_of


class AsyncClient(Base):
    """textractd over HTTP from asyncio; the same methods as `Client`, awaited."""

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 **options: Any) -> None:
        super().__init__(url, api_key, **options)
        self.http = httpx.AsyncClient(**self._client_options())

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the routes ------------------------------------------------------------------
    async def submit(self, source: Source, *, filename: str | None = None,
                     method: str | None = None, extension: str | None = None,
                     wait: float | None = None) -> dict:
        upload = upload_of(source, filename)
        params = self._upload_params(upload, method, extension, wait)
        attempt = 0
        while True:
            with upload.opened() as body:
                try:
                    response = await self._request(
                        "POST", "/v1/jobs", params=params, content=chunks(body),
                        headers=self._body_headers(upload, body),
                        timeout=self._timeout_for(wait))
                    return response.json()
                except ClientError as error:
                    delay = raise_unless_retry(self.policy, error, attempt, upload.replayable)
            await asyncio.sleep(delay)
            attempt += 1

    async def job(self, job_id: str, *, wait: float | None = None) -> dict:
        params = {"wait": f"{wait:g}"} if wait else None
        response = await self._retried("GET", f"/v1/jobs/{job_id}", params=params,
                                       timeout=self._timeout_for(wait))
        return response.json()

    async def wait(self, job_id: str, timeout: float | None = None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"job {job_id} not finished within {timeout} s")
            job = await self.job(job_id, wait=left)
            if is_final(job):
                return job

    async def text(self, job_id: str) -> str:
        return (await self._retried("GET", f"/v1/jobs/{job_id}/text")).text

    async def delete(self, job_id: str) -> None:
        await self._retried("DELETE", f"/v1/jobs/{job_id}")

    async def extract_job(self, source: Source, *, timeout: float | None = None,
                          **options: Any) -> dict:
        started = time.monotonic()
        first = POLL if timeout is None else min(POLL, timeout)
        job = await self.submit(source, wait=first, **options)
        if is_final(job):
            return job
        left = None if timeout is None else timeout - (time.monotonic() - started)
        return await self.wait(job["id"], timeout=left)

    async def extract(self, source: Source, **options: Any) -> str:
        return self._text_of(await self.extract_job(source, **options))

    async def submit_many(self, sources: Iterable[Source], *, concurrency: int = 4,
                          **options: Any) -> list[dict | ClientError]:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(source: Source) -> dict | ClientError:
            async with gate:
                try:
                    return await self.submit(source, **options)
                except ClientError as error:
                    return error

        return list(await asyncio.gather(*(one(s) for s in sources)))

    # --- sending ---------------------------------------------------------------------
    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._check(await self.http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    async def _retried(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                return await self._request(method, path, **kwargs)
            except ClientError as error:
                delay = raise_unless_retry(self.policy, error, attempt, replayable=True)
            await asyncio.sleep(delay)
            attempt += 1
