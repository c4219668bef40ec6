"""A throwaway redis-server in a folder of its own, for the tests and the benchmark.

Configured as the stack's own (supervisord.conf): a unix socket, the AOF on with fsync
every second, no RDB snapshots, no eviction; a loopback port only when asked for.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import redis

from devtools.stack import wait_for


class RedisServer:
    """A throwaway redis-server on a unix socket (and optionally a loopback port)."""

    def __init__(self, root: Path, port: int = 0, *extra: str) -> None:
        self.root = root
        self.port = port
        self.socket = root / "redis.sock"
        self.extra = extra
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0" if self.port else f"unix://{self.socket}"

    def start(self) -> RedisServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.root), "--appendonly", "yes", "--save", "",
             "--maxmemory-policy", "noeviction", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.client().ping(), 10, "redis-server to answer PING")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@contextlib.contextmanager
def throwaway_redis(prefix: str = "txr-") -> Iterator[RedisServer]:
    """A redis-server of its own in a temporary folder, removed with it afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    server = RedisServer(root).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
