"""Load against a running stack: many concurrent uploads while the api's memory is sampled.

Shared by `scripts/measure_upload_rss.py` (the README figure), the benchmark and the
tests. The clients are plain threads with blocking sockets: the body of every upload is
one shared bytes object, so the load generator itself holds a single copy however many
clients run, and the api's resident set is read from outside the api (psutil), so the
measurement does not disturb what it measures.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psutil

from devtools.multipart import multipart_body
from devtools.stack import Stack

MIB = 1024 * 1024


@dataclass(frozen=True)
class UploadRss:
    """What one run of concurrent uploads did to the api's resident memory."""

    clients: int
    upload_bytes: int
    baseline_rss: int  # bytes, just before the first upload started
    peak_rss: int  # bytes, the highest sample while the uploads ran
    samples: int
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def naive_bytes(self) -> int:
        """What holding every body at once would cost: the figure the budget must beat."""
        return self.clients * self.upload_bytes

    @property
    def target_bytes(self) -> int:
        """The issue's bound for the peak: 1.5 x every body held at once."""
        return int(self.naive_bytes * 1.5)

    def summary(self) -> str:
        return (f"{self.clients} concurrent uploads of {self.upload_bytes / MIB:.0f} MiB: "
                f"api peak RSS {self.peak_rss / MIB:.0f} MiB (baseline "
                f"{self.baseline_rss / MIB:.0f} MiB, {self.samples} samples over "
                f"{self.seconds:.1f} s; target below {self.target_bytes / MIB:.0f} MiB); "
                f"statuses {dict(sorted(self.statuses.items()))}")


def upload_once(stack: Stack, body: bytes, content_type: str, timeout: float = 300.0,
                path: str = "/v1/jobs?wait=0") -> int:
    """POST one prepared body; the HTTP status (0 when the connection failed)."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body,
                     headers={"X-API-Key": stack.api_key, "Content-Type": content_type})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


def measure_upload_rss(stack: Stack, clients: int = 32, upload_bytes: int = 16 * MIB,
                       interval: float = 0.02, timeout: float = 300.0) -> UploadRss:
    """Start `clients` uploads of `upload_bytes` at once; sample the api's RSS meanwhile.

    The document is plain text (recognised by content, so the type check passes and the
    upload is stored). Uploads the api refuses (413, 503 server_busy) are counted in
    `statuses`: a run only means something when they are all 202.
    """
    api = psutil.Process(stack.program_pid("api"))
    body, content_type = multipart_body("load.txt", b"a" * upload_bytes)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    go = threading.Barrier(clients + 1)

    def client() -> None:
        go.wait()
        status = upload_once(stack, body, content_type, timeout)
        with lock:
            statuses[status] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    baseline = api.memory_info().rss
    peak, samples = baseline, 0
    started = time.monotonic()
    go.wait()
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, api.memory_info().rss)
        samples += 1
        time.sleep(interval)  # the sampling period itself, not a wait for an event
    peak = max(peak, api.memory_info().rss)
    return UploadRss(clients, upload_bytes, baseline, peak, samples + 1,
                     time.monotonic() - started, dict(statuses))
