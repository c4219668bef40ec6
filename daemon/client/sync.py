"""The blocking client: `Client().extract("report.pdf")` returns the text."""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from daemon.client.base import POLL, Base, is_final, raise_unless_retry
from daemon.client.errors import ClientError
from daemon.client.sources import Source, upload_of


class Client(Base):
    """textractd over HTTP. Arguments not given come from TEXTRACTD_URL /
    TEXTRACTD_API_KEY, then this installation's .env. Safe to share between threads."""

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 **options: Any) -> None:
        super().__init__(url, api_key, **options)
        self.http = httpx.Client(**self._client_options())

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the routes ------------------------------------------------------------------
    def submit(self, source: Source, *, filename: str | None = None,
               method: str | None = None, extension: str | None = None,
               wait: float | None = None) -> dict:
        """Upload `source` as a new job; its JSON (finished if it ended within `wait`)."""
        upload = upload_of(source, filename)
        params = self._upload_params(upload, method, extension, wait)
        attempt = 0
        while True:
            with upload.opened() as body:
                try:
                    return self._request("POST", "/v1/jobs", params=params, content=body,
                                         headers=self._body_headers(upload, body),
                                         timeout=self._timeout_for(wait)).json()
                except ClientError as error:
                    delay = raise_unless_retry(self.policy, error, attempt, upload.replayable)
            time.sleep(delay)
            attempt += 1

    def job(self, job_id: str, *, wait: float | None = None) -> dict:
        """The job's JSON; with `wait`, once it is final or `wait` seconds have passed."""
        params = {"wait": f"{wait:g}"} if wait else None
        return self._retried("GET", f"/v1/jobs/{job_id}", params=params,
                             timeout=self._timeout_for(wait)).json()

    def wait(self, job_id: str, timeout: float | None = None) -> dict:
        """The job once final (with its text when done); TimeoutError after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"job {job_id} not finished within {timeout} s")
            job = self.job(job_id, wait=left)
            if is_final(job):
                return job

    def text(self, job_id: str) -> str:
        return self._retried("GET", f"/v1/jobs/{job_id}/text").text

    def delete(self, job_id: str) -> None:
        self._retried("DELETE", f"/v1/jobs/{job_id}")

    def extract_job(self, source: Source, *, timeout: float | None = None,
                    **options: Any) -> dict:
        """Upload and wait: the final job's JSON, done (with `text`) or failed."""
        started = time.monotonic()
        first = POLL if timeout is None else min(POLL, timeout)
        job = self.submit(source, wait=first, **options)
        if is_final(job):
            return job
        left = None if timeout is None else timeout - (time.monotonic() - started)
        return self.wait(job["id"], timeout=left)

    def extract(self, source: Source, **options: Any) -> str:
        """The text of `source`; JobFailed (with the job's error code) if it failed."""
        return self._text_of(self.extract_job(source, **options))

    def submit_many(self, sources: Iterable[Source], *, concurrency: int = 4,
                    **options: Any) -> list[dict | ClientError]:
        """Submit each source, `concurrency` at a time: the jobs in the sources' order, or
        in a refused one's place the ClientError that refused it."""
        def one(source: Source) -> dict | ClientError:
            try:
                return self.submit(source, **options)
            except ClientError as error:
                return error

        with ThreadPoolExecutor(max(1, concurrency)) as pool:
            return list(pool.map(one, sources))

    # --- sending ---------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._check(self.http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _retried(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                return self._request(method, path, **kwargs)
            except ClientError as error:
                delay = raise_unless_retry(self.policy, error, attempt, replayable=True)
            time.sleep(delay)
            attempt += 1
