"""A small blocking HTTP client for the tests: what curl would send, nothing clever."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from devtools.multipart import multipart_body
from devtools.stack import Stack


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float = 0.0
    _json: object = field(default=None, repr=False)

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class Client:
    def __init__(self, stack: Stack, key: str | None = "default", timeout: float = 120) -> None:
        self.stack = stack
        self.key = stack.api_key if key == "default" else key
        self.timeout = timeout

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: dict[str, str] | None = None, query: dict | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.port, timeout=self.timeout)
        all_headers = {"X-API-Key": self.key} if self.key else {}
        all_headers.update(headers or {})
        if query:
            path = f"{path}?{urlencode(query)}"
        started = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                         data, time.perf_counter() - started)
        finally:
            conn.close()

    def upload(self, filename: str, data: bytes, *, path: str = "/v1/jobs",
               headers: dict[str, str] | None = None, **query: object) -> Reply:
        body, content_type = multipart_body(filename, data)
        return self.request("POST", path, body=body, query=query or None,
                            headers={"Content-Type": content_type, **(headers or {})})

    def upload_raw(self, data: bytes, *, path: str = "/v1/jobs",
                   headers: dict[str, str] | None = None, **query: object) -> Reply:
        return self.request("POST", path, body=data, query=query or None,
                            headers={"Content-Type": "application/octet-stream",
                                     **(headers or {})})

    def job(self, job_id: str, **query: object) -> Reply:
        return self.request("GET", f"/v1/jobs/{job_id}", query=query or None)
