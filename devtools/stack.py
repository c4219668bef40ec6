"""A whole textractd stack (supervisord + redis + api + workers) in a folder of its own.

The tests and the benchmark start real stacks with this, beside any stack the user
already runs: the repo's own supervisord.conf is copied into the folder, so `%(here)s`
points every path (sockets, logs, spool) there, and the api gets a free port.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import psutil
import redis

from daemon.config import ROOT, Settings
from daemon.connection import connect
from daemon.store import heartbeat_key

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], object], timeout: float, what: str,
             interval: float = 0.05) -> object:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}"
                       + (f" (last error: {last_error})" if last_error else ""))


class Stack:
    def __init__(self, root: Path | None = None, *, env: dict[str, str] | None = None,
                 embedded_redis: bool = True, api: bool = True, workers: bool = True,
                 stdout: int = subprocess.DEVNULL) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="txd-"))
        self.port = free_port()
        self.api_key = secrets.token_urlsafe(24)
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "TEXTRACTD_HOME": str(self.root),
            "TEXTRACTD_EMBEDDED_REDIS": str(embedded_redis).lower(),
            "TEXTRACTD_RUN_API": str(api).lower(),
            "TEXTRACTD_RUN_WORKERS": str(workers).lower(),
            "PORT": str(self.port),
            "API_KEY": self.api_key,
            "OMP_THREAD_LIMIT": "1",
            # Tests and the benchmark upload the same corpus documents again and again,
            # each meant to be extracted: the result cache would answer most of them.
            # Those that test the cache turn it on.
            "RESULT_CACHE_TTL": "0",
            **(env or {}),
        }
        # Where supervisord.conf sends each program's output (scripts/lib.sh
        # export_log_targets): logs/<program>.log, or supervisord's stdout (`stdout` here).
        to_stdout = self.env.get("LOG_TO_STDOUT", "").lower() in {"1", "true", "yes", "on"}
        for program in ("redis", "api", "workers"):
            self.env.setdefault(f"TEXTRACTD_{program.upper()}_LOG", "/dev/stdout" if to_stdout
                                else str(self.root / "logs" / f"{program}.log"))
        self.env.setdefault("TEXTRACTD_LOG_MAXBYTES", "0" if to_stdout else "20MB")
        self.stdout = stdout
        self.process: subprocess.Popen | None = None
        self._settled = False  # supervisord has called every program RUNNING

    # --- life ------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> Stack:
        for name in ("var", "logs"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        (self.root / "var").chmod(0o700)
        shutil.copy(ROOT / "supervisord.conf", self.root / "supervisord.conf")
        # supervisord keeps its own copy of the descriptor; ours is closed at once.
        with open(self.root / "logs" / "supervisord.err", "wb") as err:
            self.process = subprocess.Popen(
                [str(BIN / "supervisord"), "-c", str(self.root / "supervisord.conf")],
                env=self.env, cwd=self.root, stdout=self.stdout, stderr=err,
                start_new_session=True)
        api, workers = (self.env[k] == "true" for k in ("TEXTRACTD_RUN_API",
                                                          "TEXTRACTD_RUN_WORKERS"))
        if api:
            wait_for(self.healthy, timeout, "the api's /health")
        if workers:
            wait_for(lambda: self.live_workers() >= self.worker_count, timeout,
                     "every worker's heartbeat")
        # /health and the heartbeats prove the stack serves; supervisord calls a program
        # RUNNING only after its startsecs (3 s for the api), which matters to a test only
        # once it talks to supervisord: supervisorctl() waits for it then, once.
        self._settled = not (api or workers) and self._wait_settled(timeout)
        return self

    def _wait_settled(self, timeout: float = 60.0) -> bool:
        wait_for(self._all_running, timeout, "supervisord to call every program RUNNING")
        return True

    def _all_running(self) -> bool:
        expected = {name for name, on in (("redis", "TEXTRACTD_EMBEDDED_REDIS"),
                                          ("api", "TEXTRACTD_RUN_API"),
                                          ("workers", "TEXTRACTD_RUN_WORKERS"))
                    if self.env[on] == "true"}
        running = {line.split()[0] for line in self._ctl("status").splitlines()
                   if " RUNNING " in line}
        return expected <= running

    @property
    def worker_count(self) -> int:
        return int(self.env.get("WORKER_PROCESSES") or os.cpu_count() or 1)

    def stop(self, timeout: float = 60.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._ctl("shutdown", timeout=timeout)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def discard(self) -> None:
        """Stop at once: supervisord and each program's process group killed. For a
        test's teardown, where how the stack stops is not what is tested: stop() takes
        2-3 s (supervisord stops its programs one by one), and a suite starts ~70 stacks.
        A pool's children follow their master (parent-death signal), their tools them."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            programs = psutil.Process(self.process.pid).children()
        except psutil.Error:
            programs = []
        self.process.kill()  # first, so that it restarts nothing of what dies next
        for program in programs:
            # supervisord makes each program the leader of a process group of its own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(program.pid, signal.SIGKILL)
        self.process.wait(10)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- talking to it ---------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redis_url(self) -> str:
        return self.env.get("REDIS_URL") or f"unix://{self.root / 'var' / 'redis.sock'}"

    def redis(self) -> redis.Redis:
        return connect(Settings(redis_url=self.redis_url, redis_max_retries=0))

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def live_workers(self) -> int:
        with self.redis() as r:
            return sum(1 for _ in r.scan_iter(heartbeat_key("*")))

    def supervisorctl(self, *args: str, timeout: float = 60.0) -> str:
        """`supervisorctl ARGS` once every program of the stack is RUNNING (the first call
        waits for it), so a test's restart or stop acts on started programs."""
        self.wait_running()
        return self._ctl(*args, timeout=timeout)

    def wait_running(self) -> None:
        """Return once supervisord has called every program of the stack RUNNING."""
        if not self._settled:
            self._settled = self._wait_settled()

    def _ctl(self, *args: str, timeout: float = 60.0) -> str:
        result = subprocess.run(
            [str(BIN / "supervisorctl"), "-c", str(self.root / "supervisord.conf"), *args],
            env=self.env, cwd=self.root, capture_output=True, text=True, timeout=timeout)
        return result.stdout

    def program_pid(self, program: str) -> int:
        return int(self.supervisorctl("pid", program).strip() or 0)

    def log_events(self, program: str) -> Iterator[dict]:
        path = self.root / "logs" / f"{program}.log"
        if not path.exists():
            return
        for line in path.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                yield orjson.loads(line)
