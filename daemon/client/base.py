"""What the sync and the async client share: the routes, their parameters, the replies.

Each client only sends: `Client` with httpx.Client, `AsyncClient` with httpx.AsyncClient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from daemon import __version__
from daemon.client.errors import ClientError, ConnectionFailed, JobFailed, error_from_reply
from daemon.client.retry import RetryNotice, RetryPolicy
from daemon.client.sources import Upload
from daemon.client.target import resolve_target

# A job's final states, as the service writes them (daemon.store.JobState).
FINAL_STATES = frozenset({"done", "failed"})
POLL = 60.0  # one long-poll of GET /v1/jobs/{id}?wait= (the api caps it at MAX_WAIT)
SLACK = 30.0  # read timeout beyond a ?wait=, for the answer to come back


class Base:
    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 60.0, retries: int | None = 5, max_backoff: float = 60.0,
                 on_retry: Callable[[RetryNotice], None] | None = None) -> None:
        self.url, self.api_key = resolve_target(url, api_key)
        self.timeout = timeout
        self.policy = RetryPolicy(retries, max_backoff, on_retry=on_retry)

    def _client_options(self) -> dict[str, Any]:
        headers = {"User-Agent": f"textractd-client/{__version__}"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        return {"base_url": self.url, "headers": headers,
                "timeout": httpx.Timeout(self.timeout, connect=10.0)}

    @staticmethod
    def _upload_params(upload: Upload, method: str | None, extension: str | None,
                       wait: float | None) -> dict[str, str]:
        params = {"filename": upload.filename, "method": method, "extension": extension,
                  "wait": None if wait is None else f"{wait:g}"}
        return {k: v for k, v in params.items() if v}

    @staticmethod
    def _body_headers(upload: Upload, body: object) -> dict[str, str]:
        """A raw body's headers: its length when known (else httpx sends it chunked)."""
        headers = {"Content-Type": "application/octet-stream"}
        size = upload.size(body)  # type: ignore[arg-type]
        if size is not None:
            headers["Content-Length"] = str(size)
        return headers

    def _timeout_for(self, wait: float | None) -> httpx.Timeout:
        return httpx.Timeout(self.timeout + (wait or 0.0), connect=10.0)

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise error_from_reply(response.status_code, response.content,
                                   dict(response.headers))
        return response

    def _unreachable(self, exc: httpx.TransportError) -> ConnectionFailed:
        return ConnectionFailed("connection_failed", f"{self.url}: {type(exc).__name__}: "
                                                     f"{exc}")

    @staticmethod
    def _text_of(job: dict) -> str:
        if job["state"] == "failed":
            error = job.get("error") or {}
            raise JobFailed(error.get("code") or "internal_error", error.get("message") or "",
                            job=job)
        return job.get("text") or ""


def is_final(job: dict) -> bool:
    return job.get("state") in FINAL_STATES


def raise_unless_retry(policy: RetryPolicy, error: ClientError, attempt: int,
                       replayable: bool) -> float:
    """The seconds to wait before trying again; raises `error` when it is not retried."""
    if not policy.should_retry(error, attempt, replayable):
        raise error
    return policy.delay(error, attempt)
